// Safetensors: write -> read round trips (bit-exact), sharded vs single-file checkpoints, a
// file written by the Python `safetensors` package, and malformed files rejected with an error
// that names the file and the tensor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "policy/safetensors.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("grpo_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string subdir(const std::string& name) const {
    fs::create_directories(dir_ / name);
    return path(name);
  }
  fs::path dir_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A raw file: 8-byte length (header.size() unless given), header, data.
std::string raw_file(const std::string& header, const std::string& data = "", std::optional<uint64_t> n = {}) {
  const uint64_t len = n ? *n : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(len >> (8 * i)));
  return out + header + data;
}

// `fn` must throw grpo::Error whose one-line message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming \"" << parts.front() << "\"";
  } catch (const Error& e) {
    const std::string msg = e.message();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "\"" << p << "\" not in: " << msg;
  }
}

std::vector<uint32_t> f32_bits(const std::vector<float>& v) {
  std::vector<uint32_t> out(v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size() * 4);
  return out;
}

// Random normals plus the values that conversions get wrong: signed zeros, ties, subnormals,
// overflow, infinities and NaNs (one with a payload).
std::vector<float> test_values(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (auto& x : v) x = d(rng);
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x3f808000u /* bf16 tie, even */,
                               0x3f818000u /* bf16 tie, odd */, 0x3f801000u /* f16 tie */, 0x00000001u,
                               0x33800000u /* 2^-24 */, 0x477ff000u /* f16 overflow */, 0x7f800000u,
                               0xff800000u, 0x7fc00000u, 0x7fa00001u /* NaN with payload */};
  for (size_t i = 0; i < std::size(specials) && i < n; ++i) std::memcpy(&v[i], &specials[i], 4);
  return v;
}

std::vector<uint16_t> stored_u16(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsTensorInfo* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  std::vector<uint16_t> out(t->nbytes / 2);
  if (!out.empty()) std::memcpy(out.data(), f.data(*t), t->nbytes);
  return out;
}

// ---------------------------------------------------------------- round trips

TEST_F(SafetensorsTest, RoundTripF32BitExact) {
  const std::vector<float> a = test_values(37, 1), b = test_values(6, 2);
  const std::string file = path("model.safetensors");
  write_safetensors(file, {{"w.a", {37}, a.data()}, {"w.b", {2, 3}, b.data()}});
  EXPECT_FALSE(fs::exists(file + ".tmp"));

  SafetensorsFile f = SafetensorsFile::open(file);
  EXPECT_EQ(f.path(), file);
  ASSERT_EQ(f.tensors().size(), 2u);
  const SafetensorsTensorInfo* ib = f.find("w.b");
  ASSERT_NE(ib, nullptr);
  EXPECT_EQ(ib->dtype, DType::f32);
  EXPECT_EQ(ib->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ib->numel(), 6);
  EXPECT_EQ(ib->nbytes, 24u);
  EXPECT_EQ(std::memcmp(f.data(*ib), b.data(), 24), 0);
  EXPECT_EQ(f.find("missing"), nullptr);

  SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir_.string());
  std::vector<float> got(37);
  c.read_f32("w.a", {37}, got.data());
  EXPECT_EQ(f32_bits(got), f32_bits(a));
  EXPECT_EQ(c.file_of("w.a"), file);
}

TEST_F(SafetensorsTest, RoundTripBf16AndF16MatchCoreConversions) {
  const std::vector<float> x = test_values(1000, 3);
  write_safetensors(path("model.safetensors"), {{"h", {10, 100}, x.data(), DType::f32, DType::bf16},
                                                 {"f", {1000}, x.data(), DType::f32, DType::f16}});
  SafetensorsFile f = SafetensorsFile::open(path("model.safetensors"));
  EXPECT_EQ(f.find("h")->dtype, DType::bf16);
  EXPECT_EQ(f.find("f")->dtype, DType::f16);
  const std::vector<uint16_t> hb = stored_u16(f, "h"), fb = stored_u16(f, "f");
  ASSERT_EQ(hb.size(), x.size());
  ASSERT_EQ(fb.size(), x.size());
  SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir_.string());
  std::vector<float> h(1000), g(1000);
  c.read_f32("h", {10, 100}, h.data());
  c.read_f32("f", {1000}, g.data());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(hb[i], f32_to_bf16(x[i])) << "bf16 bits, element " << i << " = " << x[i];
    ASSERT_EQ(fb[i], f32_to_f16(x[i])) << "f16 bits, element " << i << " = " << x[i];
    ASSERT_EQ(f32_bits({h[i]})[0], f32_bits({bf16_to_f32(hb[i])})[0]) << "bf16 read, element " << i;
    ASSERT_EQ(f32_bits({g[i]})[0], f32_bits({f16_to_f32(fb[i])})[0]) << "f16 read, element " << i;
  }
  // Ties round to even.
  EXPECT_EQ(hb[2], 0x3f80);
  EXPECT_EQ(hb[3], 0x3f82);
}

TEST_F(SafetensorsTest, RoundTripScalarsAndEmptyTensors) {
  const float s = -1.25f;
  const uint16_t sb = f32_to_bf16(0.5f);
  write_safetensors(path("model.safetensors"), {{"empty0", {0}, nullptr},
                                                 {"scalar", {}, &s},
                                                 {"empty.3d", {3, 0, 2}, nullptr, DType::f32, DType::bf16},
                                                 {"scalar.bf16", {}, &sb, DType::bf16, DType::bf16}});
  SafetensorsFile f = SafetensorsFile::open(path("model.safetensors"));
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.tensors()[0].name, "empty0");
  EXPECT_EQ(f.tensors()[1].name, "scalar");
  EXPECT_EQ(f.tensors()[2].name, "empty.3d");
  EXPECT_EQ(f.tensors()[3].name, "scalar.bf16");
  EXPECT_EQ(f.find("empty0")->numel(), 0);
  EXPECT_EQ(f.find("empty.3d")->nbytes, 0u);
  EXPECT_EQ(f.find("empty.3d")->shape, (std::vector<int64_t>{3, 0, 2}));
  EXPECT_TRUE(f.find("scalar")->shape.empty());
  EXPECT_EQ(f.find("scalar")->numel(), 1);

  SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir_.string());
  float got = 0.0f, got_b = 0.0f, none = 7.0f;
  c.read_f32("scalar", {}, &got);
  c.read_f32("scalar.bf16", {}, &got_b);
  c.read_f32("empty.3d", {3, 0, 2}, &none);
  EXPECT_EQ(got, -1.25f);
  EXPECT_EQ(got_b, 0.5f);
  EXPECT_EQ(none, 7.0f);
}

TEST_F(SafetensorsTest, RoundTripMetadata) {
  const float x = 1.0f;
  write_safetensors(path("a.safetensors"), {{"x", {1}, &x}});
  EXPECT_EQ(SafetensorsFile::open(path("a.safetensors")).metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}}));
  write_safetensors(path("b.safetensors"), {{"x", {1}, &x}}, {{"step", "7"}, {"format", "np"}, {"note", "ü \"q\""}});
  EXPECT_EQ(SafetensorsFile::open(path("b.safetensors")).metadata(),
            (std::map<std::string, std::string>{{"format", "np"}, {"note", "ü \"q\""}, {"step", "7"}}));
}

TEST_F(SafetensorsTest, WriterLayoutKeepsOrderAndAlignsData) {
  const std::vector<float> x = test_values(5, 4);
  const std::string file = path("m.safetensors");
  write_safetensors(file, {{"zeta", {5}, x.data(), DType::f32, DType::f16},
                           {"alpha", {1, 5}, x.data()},
                           {"mid", {5}, x.data(), DType::f32, DType::bf16}});
  const std::string bytes = read_bytes(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 10 + 20 + 10);
  const json header = json::parse(bytes.substr(8, n));
  EXPECT_EQ(bytes.substr(8, 16), "{\"__metadata__\":");
  EXPECT_EQ(header["zeta"]["data_offsets"], json::array({0, 10}));
  EXPECT_EQ(header["alpha"]["data_offsets"], json::array({10, 30}));
  EXPECT_EQ(header["mid"]["data_offsets"], json::array({30, 40}));
  EXPECT_EQ(header["zeta"]["dtype"], "F16");
  SafetensorsFile f = SafetensorsFile::open(file);
  std::vector<std::string> order;
  for (const auto& t : f.tensors()) order.push_back(t.name);
  EXPECT_EQ(order, (std::vector<std::string>{"zeta", "alpha", "mid"}));
}

TEST_F(SafetensorsTest, RoundTripOtherDtypes) {
  const std::vector<int32_t> i32 = {0, -1, 2147483647, -2147483647 - 1};
  const std::vector<int64_t> i64 = {int64_t(1) << 62, -3};
  const std::vector<float> f = {0.0f, 1.0f, -1.75f, 448.0f, 500.0f, 0.3f};
  const std::vector<uint16_t> bf = {f32_to_bf16(2.5f), f32_to_bf16(-0.125f)};
  write_safetensors(path("model.safetensors"), {{"i32", {4}, i32.data(), DType::i32, DType::i32},
                                                 {"i64", {2}, i64.data(), DType::i64, DType::i64},
                                                 {"f8", {6}, f.data(), DType::f32, DType::fp8_e4m3},
                                                 {"widened", {2}, bf.data(), DType::bf16, DType::f32}});
  SafetensorsFile file = SafetensorsFile::open(path("model.safetensors"));
  EXPECT_EQ(std::memcmp(file.data(*file.find("i32")), i32.data(), 16), 0);
  EXPECT_EQ(std::memcmp(file.data(*file.find("i64")), i64.data(), 16), 0);
  const auto* f8 = static_cast<const uint8_t*>(file.data(*file.find("f8")));
  for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f8[i], f32_to_fp8_e4m3(f[i])) << i;
  EXPECT_EQ(file.find("f8")->dtype, DType::fp8_e4m3);
  SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir_.string());
  std::vector<float> w(2);
  c.read_f32("widened", {2}, w.data());
  EXPECT_EQ(w, (std::vector<float>{2.5f, -0.125f}));
  EXPECT_EQ(std::string(safetensors_dtype_name(DType::fp8_e4m3)), "F8_E4M3");
}

TEST_F(SafetensorsTest, WriterOverwritesAndRejectsBadInput) {
  const std::string file = path("model.safetensors");
  const float one = 1.0f, two = 2.0f;
  auto read_x = [&] {
    const SafetensorsFile f = SafetensorsFile::open(file);
    float x = 0.0f;
    std::memcpy(&x, f.data(*f.find("x")), 4);
    return x;
  };
  write_safetensors(file, {{"x", {1}, &one}});
  write_safetensors(file, {{"x", {1}, &two}});
  EXPECT_EQ(read_x(), 2.0f);

  const int32_t i = 3;
  expect_error([&] { write_safetensors(file, {{"q", {1}, &i, DType::i32, DType::f32}}); }, {file, "\"q\"", "i32", "f32"});
  expect_error([&] { write_safetensors(file, {{"x", {1}, &one}, {"x", {1}, &one}}); }, {file, "\"x\"", "more than once"});
  expect_error([&] { write_safetensors(file, {{"neg", {2, -1}, &one}}); }, {file, "\"neg\"", "negative"});
  expect_error([&] { write_safetensors(file, {{"null", {2}, nullptr}}); }, {file, "\"null\"", "null"});
  expect_error([&] { write_safetensors(file, {{"__metadata__", {1}, &one}}); }, {file, "reserved"});
  expect_error([&] { write_safetensors(file, {{"bad\xff", {1}, &one}}); }, {file, "header"});
  const std::string nowhere = path("no/such/dir/model.safetensors");
  expect_error([&] { write_safetensors(nowhere, {{"x", {1}, &one}}); }, {nowhere, "cannot create"});
  // The failed writes left the last good file and no temporary behind.
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  EXPECT_EQ(read_x(), 2.0f);
}

// ---------------------------------------------------------------- checkpoints

class SafetensorsCheckpointTest : public SafetensorsTest {};

struct Model {
  std::vector<std::vector<float>> values;
  std::vector<SafetensorsWriteTensor> tensors;
};

// Mixed sizes and dtypes: 64 + 400 + 48 + 40 + 4 + 0 + 1200 bytes.
Model make_model() {
  Model m;
  const std::vector<std::pair<std::vector<int64_t>, DType>> specs = {
      {{4, 4}, DType::f32}, {{10, 20}, DType::bf16}, {{24}, DType::f16},  {{2, 5}, DType::f32},
      {{}, DType::f32},     {{0, 3}, DType::bf16},   {{300}, DType::f32}};
  const char* names[] = {"model.embed_tokens.weight", "model.layers.0.mlp.weight", "model.layers.0.norm.weight",
                         "model.layers.1.attn.weight", "model.scale", "model.empty", "lm_head.weight"};
  m.values.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : specs[i].first) n *= d;
    m.values.push_back(test_values(size_t(n), 100 + i));
    m.tensors.push_back({names[i], specs[i].first, m.values.back().data(), DType::f32, specs[i].second});
  }
  return m;
}

void expect_same_checkpoints(const SafetensorsCheckpoint& a, const SafetensorsCheckpoint& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const std::string& name : a.names()) {
    const SafetensorsTensorInfo &ia = a.info(name), &ib = b.info(name);
    EXPECT_EQ(ia.dtype, ib.dtype) << name;
    EXPECT_EQ(ia.shape, ib.shape) << name;
    std::vector<float> va(size_t(ia.numel())), vb(size_t(ib.numel()));
    a.read_f32(name, ia.shape, va.data());
    b.read_f32(name, ib.shape, vb.data());
    EXPECT_EQ(f32_bits(va), f32_bits(vb)) << name;
  }
}

TEST_F(SafetensorsCheckpointTest, ShardedAndSingleLoadTheSame) {
  const Model m = make_model();
  const std::string single = subdir("single"), sharded = subdir("sharded");
  EXPECT_EQ(write_safetensors_checkpoint(single, m.tensors), (std::vector<std::string>{single + "/model.safetensors"}));
  const std::vector<std::string> files = write_safetensors_checkpoint(sharded, m.tensors, 500);
  // [64 + 400] [48 + 40 + 4 + 0] [1200]
  const std::vector<std::string> expected = {sharded + "/model-00001-of-00003.safetensors",
                                             sharded + "/model-00002-of-00003.safetensors",
                                             sharded + "/model-00003-of-00003.safetensors",
                                             sharded + "/model.safetensors.index.json"};
  EXPECT_EQ(files, expected);
  EXPECT_FALSE(fs::exists(sharded + "/model.safetensors"));

  const json index = json::parse(read_bytes(sharded + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 64 + 400 + 48 + 40 + 4 + 0 + 1200);
  EXPECT_EQ(index["weight_map"].size(), m.tensors.size());
  EXPECT_EQ(index["weight_map"]["model.layers.0.mlp.weight"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["model.empty"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["lm_head.weight"], "model-00003-of-00003.safetensors");

  const SafetensorsCheckpoint a = SafetensorsCheckpoint::open(single), b = SafetensorsCheckpoint::open(sharded);
  EXPECT_EQ(a.names().size(), m.tensors.size());
  const std::vector<std::string> names = a.names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_TRUE(b.has("lm_head.weight"));
  EXPECT_FALSE(b.has("lm_head"));
  EXPECT_EQ(b.file_of("model.scale"), expected[1]);
  expect_same_checkpoints(a, b);
  // And both hold what was written.
  std::vector<float> lm(300);
  b.read_f32("lm_head.weight", {300}, lm.data());
  EXPECT_EQ(f32_bits(lm), f32_bits(m.values[6]));
}

TEST_F(SafetensorsCheckpointTest, OversizedTensorGetsItsOwnShard) {
  std::vector<float> small(10, 1.0f), big(100, 2.0f);
  const std::vector<SafetensorsWriteTensor> ts = {
      {"a", {10}, small.data()}, {"b", {10}, small.data()}, {"big", {100}, big.data()}, {"c", {10}, small.data()}};
  const std::string d = subdir("ck");
  const auto files = write_safetensors_checkpoint(d, ts, 100);  // 40 + 40 | 400 | 40
  ASSERT_EQ(files.size(), 4u);
  const json index = json::parse(read_bytes(d + "/model.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"]["a"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["b"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["big"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["c"], "model-00003-of-00003.safetensors");
  EXPECT_EQ(SafetensorsFile::open(files[1]).tensors().size(), 1u);
  // Everything within the limit: one file.
  const std::string one = subdir("one");
  EXPECT_EQ(write_safetensors_checkpoint(one, ts, 1000).size(), 1u);
  EXPECT_TRUE(fs::exists(one + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(one + "/model.safetensors.index.json"));
  expect_same_checkpoints(SafetensorsCheckpoint::open(d), SafetensorsCheckpoint::open(one));
}

TEST_F(SafetensorsCheckpointTest, RewriteRemovesStaleFiles) {
  std::vector<float> v(10, 1.0f), w(10, 3.0f);
  const std::string d = subdir("ck");
  write_safetensors_checkpoint(d, {{"a", {10}, v.data()}, {"b", {10}, v.data()}, {"c", {10}, v.data()}}, 40);
  EXPECT_TRUE(fs::exists(d + "/model-00003-of-00003.safetensors"));
  write_safetensors(d + "/model.safetensors", {{"old", {1}, v.data()}});  // a leftover single file
  write_safetensors_checkpoint(d, {{"a", {10}, w.data()}, {"b", {10}, w.data()}}, 40);
  EXPECT_FALSE(fs::exists(d + "/model-00003-of-00003.safetensors"));
  EXPECT_FALSE(fs::exists(d + "/model-00001-of-00003.safetensors"));
  EXPECT_FALSE(fs::exists(d + "/model.safetensors"));
  EXPECT_EQ(SafetensorsCheckpoint::open(d).names(), (std::vector<std::string>{"a", "b"}));
  write_safetensors_checkpoint(d, {{"z", {10}, w.data()}});  // now one file: the index must go
  EXPECT_FALSE(fs::exists(d + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(d + "/model-00001-of-00002.safetensors"));
  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(d);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"z"}));
  std::vector<float> got(10);
  c.read_f32("z", {10}, got.data());
  EXPECT_EQ(got, w);
  for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().extension(), ".safetensors") << e.path();
}

TEST_F(SafetensorsCheckpointTest, IndexWinsOverSingleFile) {
  std::vector<float> v(4, 1.0f);
  const std::string d = subdir("ck");
  write_safetensors(d + "/model-00001-of-00001.safetensors", {{"sharded", {4}, v.data()}});
  write_bytes(d + "/model.safetensors.index.json",
              R"({"metadata": {"total_size": 16}, "weight_map": {"sharded": "model-00001-of-00001.safetensors"}})");
  write_safetensors(d + "/model.safetensors", {{"single", {4}, v.data()}});
  EXPECT_EQ(SafetensorsCheckpoint::open(d).names(), (std::vector<std::string>{"sharded"}));
}

TEST_F(SafetensorsCheckpointTest, ReadErrors) {
  std::vector<float> v(6, 1.0f);
  std::vector<int32_t> ids(3, 1);
  const std::string d = subdir("ck");
  write_safetensors_checkpoint(d, {{"w", {2, 3}, v.data()}, {"ids", {3}, ids.data(), DType::i32, DType::i32}});
  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(d);
  const std::string file = d + "/model.safetensors";
  std::vector<float> out(6);
  expect_error([&] { c.read_f32("w", {3, 2}, out.data()); }, {file, "\"w\"", "[2, 3]", "[3, 2]"});
  expect_error([&] { c.read_f32("w", {6}, out.data()); }, {file, "\"w\"", "[2, 3]", "[6]"});
  expect_error([&] { c.read_f32("ids", {3}, out.data()); }, {file, "\"ids\"", "I32"});
  expect_error([&] { c.info("nope"); }, {d, "\"nope\""});
  expect_error([&] { c.file_of("nope"); }, {d, "\"nope\""});
  expect_error([&] { c.read_f32("nope", {1}, out.data()); }, {d, "\"nope\""});
}

// ---------------------------------------------------------------- the Python reference

class SafetensorsReference : public SafetensorsTest {};

TEST_F(SafetensorsReference, ReadsFileWrittenByPythonSafetensors) {
  // Written by tests/policy/make_safetensors_fixture.py with the `safetensors` package.
  const std::string fixtures = std::string(GRPO_SOURCE_DIR) + "/tests/policy/fixtures";
  const json expected = json::parse(read_bytes(fixtures + "/reference.json"));
  fs::copy_file(fixtures + "/reference.safetensors", dir_ / "model.safetensors");
  const SafetensorsFile f = SafetensorsFile::open(fixtures + "/reference.safetensors");
  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(dir_.string());

  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : expected["metadata"].items()) meta[k] = v.get<std::string>();
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), expected["tensors"].size());
  for (size_t i = 1; i < f.tensors().size(); ++i) EXPECT_LE(f.tensors()[i - 1].offset, f.tensors()[i].offset);

  for (const auto& [name, e] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    const SafetensorsTensorInfo* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(safetensors_dtype_name(t->dtype), e["dtype"].get<std::string>());
    EXPECT_EQ(t->shape, e["shape"].get<std::vector<int64_t>>());
    const std::vector<uint64_t> bits = e["bits"].get<std::vector<uint64_t>>();
    ASSERT_EQ(uint64_t(t->numel()), bits.size());
    const size_t w = dtype_size(t->dtype);
    const auto* raw = static_cast<const uint8_t*>(f.data(*t));
    std::vector<float> widened;
    for (size_t k = 0; k < bits.size(); ++k) {
      uint64_t b = 0;
      std::memcpy(&b, raw + k * w, w);
      EXPECT_EQ(b, bits[k]) << "element " << k;
      if (t->dtype == DType::f32) widened.push_back(std::bit_cast<float>(uint32_t(b)));
      if (t->dtype == DType::bf16) widened.push_back(bf16_to_f32(uint16_t(b)));
      if (t->dtype == DType::f16) widened.push_back(f16_to_f32(uint16_t(b)));
      if (t->dtype == DType::fp8_e4m3) widened.push_back(fp8_e4m3_to_f32(uint8_t(b)));
    }
    if (!e.contains("f32_bits")) continue;
    // torch's widening to f32 agrees with core/dtype.h ...
    // (bit for bit, except that any NaN matches any NaN: torch widens f16 NaN to 0x7fffffff).
    const std::vector<uint32_t> want = e["f32_bits"].get<std::vector<uint32_t>>();
    auto expect_same = [&](const std::vector<float>& got, const char* what) {
      ASSERT_EQ(got.size(), want.size()) << what;
      for (size_t k = 0; k < want.size(); ++k) {
        if (std::isnan(std::bit_cast<float>(want[k])))
          EXPECT_TRUE(std::isnan(got[k])) << what << ", element " << k;
        else
          EXPECT_EQ(std::bit_cast<uint32_t>(got[k]), want[k]) << what << ", element " << k;
      }
    };
    expect_same(widened, "core/dtype.h");
    // ... and with read_f32.
    if (t->dtype == DType::fp8_e4m3) continue;
    std::vector<float> got(bits.size());
    c.read_f32(name, t->shape, got.data());
    expect_same(got, "read_f32");
  }
}

// ---------------------------------------------------------------- corrupt files

class SafetensorsCorrupt : public SafetensorsTest {
 protected:
  // Writes `bytes` as a file and expects opening it to fail naming the file and `parts`.
  void expect_rejected(const std::string& bytes, std::vector<std::string> parts) {
    const std::string file = path("bad.safetensors");
    write_bytes(file, bytes);
    parts.insert(parts.begin(), file);
    expect_error([&] { SafetensorsFile::open(file); }, parts);
  }
  static std::string entry(const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
    return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(b) + "," +
           std::to_string(e) + "]}";
  }
};

TEST_F(SafetensorsCorrupt, TruncatedFile) {
  expect_rejected("", {"truncated", "0 bytes"});
  expect_rejected(std::string("\x02\x00\x00\x00\x00", 5), {"truncated", "5 bytes"});
}

TEST_F(SafetensorsCorrupt, HeaderLength) {
  expect_rejected(raw_file("{}", "", 3), {"header length 3", "past the end"});
  expect_rejected(raw_file("{}", "", 1000), {"header length 1000", "past the end", "10 bytes"});
  expect_rejected(raw_file("{}", "", ~uint64_t(0)), {"header length 18446744073709551615", "absurd"});
  expect_rejected(raw_file("{}", "", 100'000'001), {"absurd"});
  expect_rejected(raw_file("", "xx", 0), {"header length 0", "too small"});
  expect_rejected(raw_file("{", "x", 1), {"header length 1", "too small"});
}

TEST_F(SafetensorsCorrupt, HeaderNotJson) {
  expect_rejected(raw_file("{\"a\": {\"dtype\": \"F32\","), {"not valid JSON"});
  expect_rejected(raw_file("garbage!"), {"not valid JSON"});
  expect_rejected(raw_file(std::string("{\"a\"\0\0\0", 7)), {"not valid JSON"});
  expect_rejected(raw_file("{\"\xff\xfe\": 1}"), {"not valid JSON"});  // not UTF-8
}

TEST_F(SafetensorsCorrupt, HeaderNotObject) {
  expect_rejected(raw_file("[1, 2, 3]"), {"not a JSON object", "array"});
  expect_rejected(raw_file("\"str\""), {"not a JSON object", "string"});
  expect_rejected(raw_file("{\"w\": [1, 2]}"), {"\"w\"", "not a JSON object"});
  expect_rejected(raw_file("{\"__metadata__\": [\"x\"]}"), {"__metadata__", "not a JSON object"});
  expect_rejected(raw_file("{\"__metadata__\": {\"step\": 7}}"), {"__metadata__", "\"step\"", "not a string"});
}

TEST_F(SafetensorsCorrupt, UnknownDtype) {
  expect_rejected(raw_file("{\"w.f64\":" + entry("F64", "[1]", 0, 8) + "}", std::string(8, '\0')),
                  {"\"w.f64\"", "\"F64\"", "unsupported dtype"});
  expect_rejected(raw_file("{\"w\":" + entry("f32", "[1]", 0, 4) + "}", std::string(4, '\0')), {"\"w\"", "\"f32\""});
  expect_rejected(raw_file("{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", std::string(4, '\0')),
                  {"\"w\"", "dtype"});
}

TEST_F(SafetensorsCorrupt, EntryFields) {
  const std::string d4(4, '\0');
  expect_rejected(raw_file("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", d4), {"\"w\"", "no \"dtype\""});
  expect_rejected(raw_file("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", d4), {"\"w\"", "no \"shape\""});
  expect_rejected(raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", d4), {"\"w\"", "no \"data_offsets\""});
  expect_rejected(raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", d4),
                  {"\"w\"", "data_offsets"});
  expect_rejected(raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,4]}}", d4),
                  {"\"w\"", "data_offsets"});
  expect_rejected(raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", d4),
                  {"\"w\"", "\"shape\" is not a JSON array"});
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[-1]", 0, 4) + "}", d4), {"\"w\"", "[-1]", "not a non-negative"});
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[1.0]", 0, 4) + "}", d4), {"\"w\"", "not a non-negative"});
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[\"1\"]", 0, 4) + "}", d4), {"\"w\"", "not a non-negative"});
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[4294967296,4294967296]", 0, 4) + "}", d4),
                  {"\"w\"", "63 bits"});
  expect_rejected(raw_file("{\"w\":" + entry("I64", "[4611686018427387904]", 0, 4) + "}", d4), {"\"w\"", "64 bits"});
}

TEST_F(SafetensorsCorrupt, ShapeBytesMismatch) {
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[2,3]", 0, 20) + "}", std::string(20, '\0')),
                  {"\"w\"", "[2,3]", "needs 24 bytes", "hold 20"});
  expect_rejected(raw_file("{\"w\":" + entry("BF16", "[]", 0, 4) + "}", std::string(4, '\0')),
                  {"\"w\"", "needs 2 bytes", "hold 4"});
}

TEST_F(SafetensorsCorrupt, OffsetsOutsideDataSection) {
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[4]", 0, 16) + "}", std::string(12, '\0')),
                  {"\"w\"", "past the end of the data section", "12 bytes"});
  expect_rejected(raw_file("{\"w\":" + entry("F32", "[0]", 8, 4) + "}", std::string(8, '\0')),
                  {"\"w\"", "[8, 4]", "end before they begin"});
  expect_rejected(raw_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,"
                           "18446744073709551616]}}",
                           std::string(4, '\0')),
                  {"\"w\"", "data_offsets"});
}

TEST_F(SafetensorsCorrupt, OverlappingRanges) {
  expect_rejected(raw_file("{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"b\":" + entry("F32", "[2]", 4, 12) + "}",
                           std::string(12, '\0')),
                  {"\"b\"", "overlap", "\"a\""});
  expect_rejected(raw_file("{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"b\":" + entry("F32", "[2]", 0, 8) + "}",
                           std::string(8, '\0')),
                  {"overlap", "\"a\"", "\"b\""});
  // An empty tensor inside another tensor's range overlaps it too.
  expect_rejected(raw_file("{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"e\":" + entry("F32", "[0]", 4, 4) + "}",
                           std::string(8, '\0')),
                  {"overlap"});
}

TEST_F(SafetensorsCorrupt, HoleInDataSection) {
  expect_rejected(raw_file("{\"a\":" + entry("F32", "[1]", 0, 4) + ",\"b\":" + entry("F32", "[1]", 8, 12) + "}",
                           std::string(12, '\0')),
                  {"\"b\"", "hole of 4 bytes", "after tensor \"a\""});
  expect_rejected(raw_file("{\"b\":" + entry("F32", "[1]", 4, 8) + "}", std::string(8, '\0')),
                  {"\"b\"", "hole of 4 bytes", "its start"});
  expect_rejected(raw_file("{\"a\":" + entry("F32", "[1]", 0, 4) + "}", std::string(12, '\0')),
                  {"last 8 bytes", "belong to no tensor", "\"a\""});
  expect_rejected(raw_file("{}", "xyz"), {"last 3 bytes", "belong to no tensor"});
}

TEST_F(SafetensorsCorrupt, DuplicateNames) {
  expect_rejected(raw_file("{\"a\":" + entry("F32", "[1]", 0, 4) + ",\"a\":" + entry("F32", "[1]", 4, 8) + "}",
                           std::string(8, '\0')),
                  {"\"a\"", "more than once"});
  expect_rejected(raw_file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                           std::string(4, '\0')),
                  {"\"a\"", "\"dtype\"", "more than once"});
}

TEST_F(SafetensorsCorrupt, NotAFile) {
  const std::string missing = path("missing.safetensors");
  expect_error([&] { SafetensorsFile::open(missing); }, {missing, "cannot open"});
  const std::string d = subdir("a_dir");
  expect_error([&] { SafetensorsFile::open(d); }, {d, "not a regular file"});
}

TEST_F(SafetensorsCorrupt, ValidMinimalFiles) {
  // The edges of the rules, on the accepting side.
  write_bytes(path("empty.safetensors"), raw_file("{}"));
  EXPECT_TRUE(SafetensorsFile::open(path("empty.safetensors")).tensors().empty());
  write_bytes(path("padded.safetensors"),
              raw_file("{\"__metadata__\":null,\"a\":" + entry("F32", "[1]", 0, 4) + "}      ", "abcd"));
  const SafetensorsFile f = SafetensorsFile::open(path("padded.safetensors"));
  EXPECT_EQ(std::memcmp(f.data(*f.find("a")), "abcd", 4), 0);
  EXPECT_TRUE(f.metadata().empty());
}

// Every prefix of a valid file, and every header byte flipped, either opens (and every
// tensor's bytes can be read) or fails with grpo::Error: never a crash or another exception.
// Run under AddressSanitizer this also shows no out-of-bounds read.
TEST_F(SafetensorsCorrupt, PrefixesAndFlippedBytes) {
  const std::vector<float> x = test_values(6, 9);
  const std::string good_path = path("good.safetensors");
  write_safetensors(good_path, {{"a", {2, 3}, x.data(), DType::f32, DType::bf16},
                                {"b", {}, x.data()},
                                {"c", {0}, nullptr},
                                {"d", {3}, x.data()}});
  const std::string good = read_bytes(good_path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(good[size_t(i)]);
  const std::string file = path("mutant.safetensors");
  int opened = 0, rejected = 0;
  auto attempt = [&](const std::string& bytes, const std::string& what) {
    write_bytes(file, bytes);
    try {
      const SafetensorsFile f = SafetensorsFile::open(file);
      uint64_t sum = 0;
      for (const SafetensorsTensorInfo& t : f.tensors()) {
        const auto* p = static_cast<const uint8_t*>(f.data(t));
        for (uint64_t i = 0; i < t.nbytes; ++i) sum += p[i];
      }
      volatile uint64_t sink = sum;  // keep the reads
      (void)sink;
      ++opened;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(file), std::string::npos) << what << ": " << e.message();
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": not a grpo::Error: " << e.what();
    }
  };
  for (size_t len = 0; len < good.size(); ++len) attempt(good.substr(0, len), "prefix of " + std::to_string(len));
  const uint8_t masks[] = {0x01, 0x20, 0xff};
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    for (uint8_t m : masks) {
      std::string bytes = good;
      bytes[pos] = char(uint8_t(bytes[pos]) ^ m);
      attempt(bytes, "byte " + std::to_string(pos) + " ^ " + std::to_string(m));
    }
  }
  EXPECT_GT(rejected, int(good.size()));  // every prefix at least
  EXPECT_GT(opened, 0);                   // flips in padding, names and metadata survive
}

// ---------------------------------------------------------------- corrupt checkpoints

class SafetensorsCorruptCheckpoint : public SafetensorsTest {
 protected:
  void SetUp() override {
    SafetensorsTest::SetUp();
    ck_ = subdir("ck");
    index_ = ck_ + "/model.safetensors.index.json";
    write_safetensors(ck_ + "/s1.safetensors", {{"a", {2}, v_.data()}, {"b", {2}, v_.data()}});
    write_safetensors(ck_ + "/s2.safetensors", {{"c", {2}, v_.data()}});
  }
  void write_index(const std::string& weight_map) {
    write_bytes(index_, "{\"metadata\": {\"total_size\": 24}, \"weight_map\": " + weight_map + "}");
  }
  void expect_rejected(const std::vector<std::string>& parts) {
    expect_error([&] { SafetensorsCheckpoint::open(ck_); }, parts);
  }
  std::vector<float> v_ = {1.0f, 2.0f};
  std::string ck_, index_;
};

TEST_F(SafetensorsCorruptCheckpoint, ValidIndexOpens) {
  write_index(R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})");
  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(ck_);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.file_of("c"), ck_ + "/s2.safetensors");
}

TEST_F(SafetensorsCorruptCheckpoint, BadIndex) {
  write_bytes(index_, "{\"weight_map\": {\"a\": ");
  expect_rejected({index_, "not valid JSON"});
  write_bytes(index_, "[1]");
  expect_rejected({index_, "not a JSON object"});
  write_bytes(index_, "{\"metadata\": {}}");
  expect_rejected({index_, "weight_map"});
  write_index(R"({"a": "s1.safetensors", "a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})");
  expect_rejected({index_, "\"a\"", "more than once"});
  write_index(R"({"a": 5})");
  expect_rejected({index_, "\"a\"", "not a file name"});
  write_index(R"({"a": "../s1.safetensors"})");
  expect_rejected({index_, "\"a\"", "leaves the directory"});
  write_index(R"({"a": "/etc/passwd"})");
  expect_rejected({index_, "\"a\"", "absolute"});
}

TEST_F(SafetensorsCorruptCheckpoint, MissingShard) {
  write_index(R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s3.safetensors"})");
  expect_rejected({index_, "\"s3.safetensors\"", "\"c\"", "missing", ck_ + "/s3.safetensors"});
}

TEST_F(SafetensorsCorruptCheckpoint, TensorMissingFromShard) {
  write_index(R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors", "d": "s2.safetensors"})");
  expect_rejected({ck_ + "/s2.safetensors", "\"d\"", index_, "does not hold it"});
}

TEST_F(SafetensorsCorruptCheckpoint, UnexpectedTensorInShard) {
  write_index(R"({"a": "s1.safetensors", "c": "s2.safetensors"})");
  expect_rejected({ck_ + "/s1.safetensors", "unexpected tensor \"b\"", index_, "does not list it"});
  write_safetensors(ck_ + "/s2.safetensors", {{"c", {2}, v_.data()}, {"a", {2}, v_.data()}});
  write_index(R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})");
  expect_rejected({ck_ + "/s2.safetensors", "unexpected tensor \"a\"", "\"s1.safetensors\""});
}

TEST_F(SafetensorsCorruptCheckpoint, CorruptShard) {
  write_bytes(ck_ + "/s2.safetensors", raw_file("{\"c\": 1}"));
  write_index(R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})");
  expect_rejected({ck_ + "/s2.safetensors", "\"c\"", "not a JSON object"});
}

TEST_F(SafetensorsCorruptCheckpoint, NeitherFilePresent) {
  expect_rejected({ck_, "neither model.safetensors.index.json nor model.safetensors"});
  const std::string nowhere = path("no_such_dir");
  expect_error([&] { SafetensorsCheckpoint::open(nowhere); }, {nowhere, "no safetensors checkpoint"});
}

}  // namespace
}  // namespace grpo
