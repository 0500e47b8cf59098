// learner/train/tensorboard.h: CRC-32C against published vectors; event files parsed back by
// a parser written here (its own bitwise CRC-32C, the generated Event class), by the
// library's reader, and by TensorBoard's own reader (tests/trainer/read_tensorboard.py,
// skipped when tensorboard is not installed); corrupt, torn and unwritable files.
#include "learner/train/tensorboard.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "proto/tensorboard.pb.h"

namespace grpo::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// ---- an independent reader: bitwise CRC-32C, hand-parsed TFRecords ----------------------

uint32_t bitwise_crc32c(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}
uint32_t bitwise_masked(const std::string& bytes) {
  const uint32_t c = bitwise_crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

uint64_t le(const std::string& bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | uint8_t(bytes[at + size_t(i)]);
  return v;
}

struct RawRecord {
  size_t offset = 0;
  grpo::tensorboard::Event event;
};

// Parses the whole file; any framing, CRC or decoding fault fails the test.
std::vector<RawRecord> parse_by_hand(const std::string& bytes) {
  std::vector<RawRecord> out;
  size_t at = 0;
  while (at < bytes.size()) {
    EXPECT_GE(bytes.size() - at, 16u) << "torn record at " << at;
    if (bytes.size() - at < 16) break;
    const uint64_t length = le(bytes, at, 8);
    EXPECT_EQ(le(bytes, at + 8, 4), bitwise_masked(bytes.substr(at, 8))) << "length CRC of the record at " << at;
    EXPECT_LE(length, bytes.size() - at - 16) << "record at " << at;
    if (length > bytes.size() - at - 16) break;
    const std::string data = bytes.substr(at + 12, size_t(length));
    EXPECT_EQ(le(bytes, at + 12 + size_t(length), 4), bitwise_masked(data)) << "data CRC of the record at " << at;
    RawRecord r;
    r.offset = at;
    EXPECT_TRUE(r.event.ParseFromString(data)) << "record at " << at << " is not an Event";
    out.push_back(std::move(r));
    at += 16 + size_t(length);
  }
  return out;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// ---- helpers ---------------------------------------------------------------------------

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("grpo_tb_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  return dir;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Runs `fn`, which must throw grpo::Error with every one of `parts` in its message.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    for (const std::string& part : parts)
      EXPECT_NE(e.message().find(part), std::string::npos) << "message: " << e.message() << "\nlacks: " << part;
    return;
  }
  ADD_FAILURE() << "no grpo::Error thrown (expected one naming " << (parts.empty() ? "" : parts[0]) << ")";
}

// The scalars the tests write: several tags, repeated steps, a step past 2^32, values that
// are not floats exactly, out of float range, and non-finite.
std::vector<ScalarEvent> sample_scalars() {
  const double t0 = 1700000000.125;
  const double inf = std::numeric_limits<double>::infinity();
  return {
      {"reward/mean", 0.42, 0, t0},
      {"loss", -1.5e-3, 0, t0 + 0.5},
      {"accuracy/τ", 1.0, 0, t0 + 0.75},
      {"reward/mean", 0.1, 1, t0 + 1.25},
      {"loss", 3.0e300, 1, t0 + 1.5},  // beyond float range: +inf
      {"reward/mean", 1.0 / 3.0, 2, t0 + 2},
      {"loss", -inf, 2, t0 + 2.5},
      {"grad_norm", std::nan(""), 2, t0 + 2.75},
      {"lr", 1e-6, int64_t(1) << 40, t0 + 1e6},
  };
}

// What the file holds for `value`: the float TensorBoard stores.
double as_stored(double value) {
  if (std::isfinite(value) && std::fabs(value) > double(std::numeric_limits<float>::max()))
    return value > 0 ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  return double(float(value));
}

// Equal as stored floats, NaN matching NaN.
bool same_value(double stored, double expected) {
  const double e = as_stored(expected);
  return std::isnan(e) ? std::isnan(stored) : stored == e;
}

// Writes sample_scalars() to a new event file in `dir`; returns its path.
std::string write_sample(const fs::path& dir) {
  TensorBoardWriter tb(dir.string());
  for (const ScalarEvent& s : sample_scalars()) tb.add_scalar(s.tag, s.value, s.step, s.wall_time);
  tb.flush();
  return tb.path();
}

// Byte offsets of each record of a well-formed file.
std::vector<size_t> record_offsets(const std::string& bytes) {
  std::vector<size_t> offsets;
  for (size_t at = 0; at + 12 <= bytes.size(); at += 16 + size_t(le(bytes, at, 8))) offsets.push_back(at);
  return offsets;
}

// ---- CRC ---------------------------------------------------------------------------------

TEST(TensorBoardCrc, KnownVectors) {
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::string ascending(32, '\0'), descending(32, '\0');  // RFC 3720 B.4
  for (int i = 0; i < 32; ++i) ascending[size_t(i)] = char(i), descending[size_t(i)] = char(31 - i);
  EXPECT_EQ(crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending.data(), descending.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  // The bitwise CRC of this test agrees on the same vectors (so it can judge the files).
  EXPECT_EQ(bitwise_crc32c(digits), 0xE3069283u);
  EXPECT_EQ(bitwise_crc32c(ones), 0x62A8AB43u);
}

TEST(TensorBoardCrc, ContinuesAndMasksLikeTheDefinition) {
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(char((i * 131 + 7) & 0xff));
  for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(500), bytes.size()}) {
    const uint32_t first = crc32c(bytes.data(), cut);
    EXPECT_EQ(crc32c(bytes.data() + cut, bytes.size() - cut, first), bitwise_crc32c(bytes)) << "cut at " << cut;
  }
  for (size_t n : {size_t(0), size_t(1), size_t(8), size_t(999)}) {
    const std::string part = bytes.substr(0, n);
    EXPECT_EQ(masked_crc32c(part.data(), part.size()), bitwise_masked(part)) << n << " bytes";
  }
  // masked(c) = rotate right by 15, plus 0xa282ead8: for "123456789", 0xE3069283 -> 0x1A8BC8B6 + delta.
  EXPECT_EQ(masked_crc32c("123456789", 9), uint32_t(((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u));
}

// ---- writing and reading back ------------------------------------------------------------

TEST(TensorBoardWriter, FileParsedByHandHoldsEveryScalar) {
  const fs::path dir = fresh_dir("by_hand") / "nested" / "tb";  // parents are created
  const double before = unix_now();
  const std::string path = write_sample(dir);
  const double after = unix_now();

  // The name: events.out.tfevents.<unix seconds>.<hostname>.<pid>.grpo, in `dir`.
  EXPECT_EQ(fs::path(path).parent_path(), dir);
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  std::smatch m;
  const std::string name = fs::path(path).filename().string();
  ASSERT_TRUE(std::regex_match(name, m, std::regex(R"(^events\.out\.tfevents\.([0-9]+)\.(.+)\.([0-9]+)\.grpo$)")))
      << name;
  EXPECT_GE(std::stod(m[1]), std::floor(before));
  EXPECT_LE(std::stod(m[1]), after);
  EXPECT_EQ(m[2].str(), host);
  EXPECT_EQ(std::stol(m[3]), long(::getpid()));

  const std::vector<RawRecord> records = parse_by_hand(read_bytes(path));
  const std::vector<ScalarEvent> expected = sample_scalars();
  ASSERT_EQ(records.size(), expected.size() + 1);
  const auto& first = records[0].event;
  EXPECT_EQ(first.what_case(), grpo::tensorboard::Event::kFileVersion);
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  EXPECT_EQ(first.step(), 0);
  EXPECT_GE(first.wall_time(), before);
  EXPECT_LE(first.wall_time(), after);
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& e = records[i + 1].event;
    SCOPED_TRACE("scalar " + std::to_string(i) + " (" + expected[i].tag + ")");
    ASSERT_EQ(e.what_case(), grpo::tensorboard::Event::kSummary);
    EXPECT_EQ(e.step(), expected[i].step);
    EXPECT_EQ(e.wall_time(), expected[i].wall_time);
    ASSERT_EQ(e.summary().value_size(), 1);
    EXPECT_EQ(e.summary().value(0).tag(), expected[i].tag);
    EXPECT_TRUE(same_value(e.summary().value(0).simple_value(), expected[i].value))
        << e.summary().value(0).simple_value() << " vs " << expected[i].value;
  }
  fs::remove_all(dir.parent_path().parent_path());
}

TEST(TensorBoardWriter, LibraryReaderAgrees) {
  const fs::path dir = fresh_dir("reader");
  const std::string path = write_sample(dir);
  const std::vector<TfRecord> records = read_tfrecords(path);
  const std::vector<ScalarEvent> expected = sample_scalars();
  ASSERT_EQ(records.size(), expected.size() + 1);
  for (const TfRecord& r : records) EXPECT_TRUE(r.length_crc_ok && r.data_crc_ok);

  const EventFileContents contents = read_event_file(path);
  EXPECT_EQ(contents.file_version, "brain.Event:2");
  ASSERT_EQ(contents.scalars.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("scalar " + std::to_string(i));
    EXPECT_EQ(contents.scalars[i].tag, expected[i].tag);
    EXPECT_EQ(contents.scalars[i].step, expected[i].step);
    EXPECT_EQ(contents.scalars[i].wall_time, expected[i].wall_time);
    EXPECT_TRUE(same_value(contents.scalars[i].value, expected[i].value));
  }
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, FlushReachesTheFileAndTheDestructorFlushes) {
  const fs::path dir = fresh_dir("flush");
  std::string path;
  {
    TensorBoardWriter tb(dir.string());
    path = tb.path();
    EXPECT_EQ(read_event_file(path).scalars.size(), 0u);  // a valid file from the start
    tb.add_scalar("a", 1.0, 1, 10.0);
    tb.add_scalar("a", 2.0, 2, 11.0);
    tb.flush();
    const EventFileContents seen = read_event_file(path);  // while the writer is open
    ASSERT_EQ(seen.scalars.size(), 2u);
    EXPECT_EQ(seen.scalars[1].value, 2.0);
    tb.add_scalar("b", 3.0, 3, 12.0);  // left buffered for the destructor
  }
  const EventFileContents done = read_event_file(path);
  ASSERT_EQ(done.scalars.size(), 3u);
  EXPECT_EQ(done.scalars[2].tag, "b");
  EXPECT_EQ(done.scalars[2].step, 3);
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, TwoWritersInOneFolderDoNotClash) {
  const fs::path dir = fresh_dir("two");
  std::string first, second;
  {
    TensorBoardWriter a(dir.string()), b(dir.string());
    first = a.path();
    second = b.path();
    ASSERT_NE(first, second);
    // Same second, same process: the second name is the first plus a counter (which sorts
    // after it, as TensorBoard reads a folder's files in name order).
    const std::regex seconds(R"(tfevents\.([0-9]+)\.)");
    std::smatch ma, mb;
    ASSERT_TRUE(std::regex_search(first, ma, seconds) && std::regex_search(second, mb, seconds));
    if (ma[1] == mb[1]) {
      EXPECT_EQ(second, first + ".1");
    }
    a.add_scalar("x", 1.0, 1, 1.0);
    b.add_scalar("x", 2.0, 2, 2.0);
  }
  const EventFileContents ca = read_event_file(first), cb = read_event_file(second);
  ASSERT_EQ(ca.scalars.size(), 1u);
  ASSERT_EQ(cb.scalars.size(), 1u);
  EXPECT_EQ(ca.scalars[0].value, 1.0);
  EXPECT_EQ(cb.scalars[0].value, 2.0);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, RejectsBadTags) {
  const fs::path dir = fresh_dir("tags");
  TensorBoardWriter tb(dir.string());
  expect_error([&] { tb.add_scalar("", 1.0, 4, 1.0); }, {tb.path(), "empty tag", "step 4"});
  expect_error([&] { tb.add_scalar("bad\xff", 1.0, 5, 1.0); }, {tb.path(), "UTF-8", "step 5"});
  expect_error([&] { tb.add_scalar("\xed\xa0\x80", 1.0, 6, 1.0); }, {"UTF-8"});  // a surrogate
  expect_error([&] { tb.add_scalar("\xc0\xaf", 1.0, 7, 1.0); }, {"UTF-8"});      // overlong '/'
  tb.add_scalar("ok/\xf0\x9f\x98\x80", 1.0, 8, 1.0);                           // U+1F600
  tb.flush();
  const EventFileContents c = read_event_file(tb.path());
  ASSERT_EQ(c.scalars.size(), 1u);  // the rejected ones wrote nothing
  EXPECT_EQ(c.scalars[0].tag, "ok/\xf0\x9f\x98\x80");
  fs::remove_all(dir);
}

// ---- damaged files -----------------------------------------------------------------------

TEST(TensorBoardReader, FlippedByteIsACrcError) {
  const fs::path dir = fresh_dir("flip");
  const std::string path = write_sample(dir);
  const std::string good = read_bytes(path);
  const std::vector<size_t> at = record_offsets(good);
  ASSERT_EQ(at.size(), sample_scalars().size() + 1);

  struct Case {
    size_t byte;
    bool length_ok, data_ok;
    const char* what;
  };
  const size_t r = 2;  // the damaged record
  const size_t data_len = at[r + 1] - at[r] - 16;
  for (const Case& c : {Case{at[r] + 12, true, false, "first data byte"},
                        Case{at[r] + 12 + data_len - 1, true, false, "last data byte"},
                        Case{at[r] + 12 + data_len + 2, true, false, "data CRC"},
                        Case{at[r] + 9, false, true, "length CRC"}}) {
    SCOPED_TRACE(c.what);
    std::string bytes = good;
    bytes[c.byte] = char(bytes[c.byte] ^ 0x10);
    write_bytes(path, bytes);
    const std::vector<TfRecord> records = read_tfrecords(path);
    ASSERT_EQ(records.size(), at.size());
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].length_crc_ok, i != r || c.length_ok) << "record " << i;
      EXPECT_EQ(records[i].data_crc_ok, i != r || c.data_ok) << "record " << i;
    }
    expect_error([&] { read_event_file(path); }, {path, "CRC mismatch", "offset " + std::to_string(at[r])});
  }

  // A flipped high bit of a length: it runs past the end, and its CRC says it is garbage.
  std::string bytes = good;
  bytes[at[r] + 5] = char(bytes[at[r] + 5] ^ 0x01);
  write_bytes(path, bytes);
  expect_error([&] { read_tfrecords(path); }, {path, "corrupt", "offset " + std::to_string(at[r])});
  fs::remove_all(dir);
}

TEST(TensorBoardReader, TruncatedFileIsAnError) {
  const fs::path dir = fresh_dir("torn");
  const std::string path = write_sample(dir);
  const std::string good = read_bytes(path);
  const std::vector<size_t> at = record_offsets(good);
  const size_t last = at.back();
  for (size_t size : {good.size() - 1, last + 12 + 3, last + 12, last + 11, last + 1}) {
    SCOPED_TRACE("cut to " + std::to_string(size) + " of " + std::to_string(good.size()) + " bytes");
    write_bytes(path, good.substr(0, size));
    expect_error([&] { read_tfrecords(path); }, {path, "truncated", "offset " + std::to_string(last)});
    expect_error([&] { read_event_file(path); }, {path, "truncated"});
  }
  // Cut at a record boundary: a shorter, valid file.
  write_bytes(path, good.substr(0, last));
  EXPECT_EQ(read_event_file(path).scalars.size(), sample_scalars().size() - 1);
  // Nothing at all, or no file.
  write_bytes(path, "");
  expect_error([&] { read_event_file(path); }, {path, "empty"});
  expect_error([&] { read_event_file((dir / "missing").string()); }, {(dir / "missing").string(), "cannot open"});
  fs::remove_all(dir);
}

TEST(TensorBoardReader, FirstRecordMustBeTheFileVersion) {
  const fs::path dir = fresh_dir("no_version");
  const std::string path = write_sample(dir);
  const std::string good = read_bytes(path);
  const std::vector<size_t> at = record_offsets(good);
  write_bytes(path, good.substr(at[1]));  // drop the file_version record
  expect_error([&] { read_event_file(path); }, {path, "file_version"});
  fs::remove_all(dir);
}

TEST(TensorBoardWriter, UnwritableFolderIsAClearError) {
  const fs::path root = fresh_dir("unwritable");
  fs::create_directories(root);
  // A folder whose parent is a regular file cannot be created.
  write_bytes(root / "plain_file", "x");
  const std::string under_file = (root / "plain_file" / "tb").string();
  expect_error([&] { TensorBoardWriter tb(under_file); }, {under_file, "cannot create"});

  // An existing folder that refuses new files: read-only, or /proc/self where this process
  // is root (root writes into read-only folders).
  const fs::path ro = root / "read_only";
  fs::create_directories(ro);
  ::chmod(ro.c_str(), 0555);
  std::string dir = ro.string();
  if (::access(ro.c_str(), W_OK) == 0) dir = "/proc/self";
  if (fs::is_directory(dir))
    expect_error([&] { TensorBoardWriter tb(dir); }, {dir + "/events.out.tfevents.", "cannot create"});
  ::chmod(ro.c_str(), 0755);
  fs::remove_all(root);
}

// ---- TensorBoard's own reader ------------------------------------------------------------

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A JSON number, or one of the strings read_tensorboard.py writes for non-finite values.
double json_number(const Json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::nan("");
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    ADD_FAILURE() << "unexpected value " << s;
    return 0;
  }
  return v.get<double>();
}

TEST(TensorBoardPython, TensorBoardReadsEveryScalar) {
  if (std::system("command -v python3 > /dev/null 2>&1") != 0) GTEST_SKIP() << "python3 is not on PATH";
  const fs::path dir = fresh_dir("python");
  const std::string path = write_sample(dir);
  const std::string script = std::string(GRPO_SOURCE_DIR) + "/tests/trainer/read_tensorboard.py";
  const std::string err_path = (dir.parent_path() / (dir.filename().string() + ".stderr")).string();
  const std::string command =
      "python3 " + shell_quote(script) + " " + shell_quote(path) + " 2> " + shell_quote(err_path);
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << command;
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  std::string err = read_bytes(err_path);
  fs::remove(err_path);
  ASSERT_TRUE(WIFEXITED(status)) << command;
  if (WEXITSTATUS(status) == 77 || WEXITSTATUS(status) == 127) {
    fs::remove_all(dir);
    GTEST_SKIP() << (err.empty() ? "python3 cannot run " + script : err);
  }
  ASSERT_EQ(WEXITSTATUS(status), 0) << command << "\n" << err;

  const Json j = Json::parse(out);
  EXPECT_EQ(j.at("file_version"), "brain.Event:2");
  const std::vector<ScalarEvent> expected = sample_scalars();
  const Json& scalars = j.at("scalars");
  ASSERT_EQ(scalars.size(), expected.size()) << out;
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("scalar " + std::to_string(i) + " (" + expected[i].tag + ")");
    EXPECT_EQ(scalars[i].at("tag").get<std::string>(), expected[i].tag);
    EXPECT_EQ(scalars[i].at("step").get<int64_t>(), expected[i].step);
    EXPECT_EQ(scalars[i].at("wall_time").get<double>(), expected[i].wall_time);
    EXPECT_TRUE(same_value(json_number(scalars[i].at("value")), expected[i].value)) << scalars[i].dump();
  }

  // TensorBoard's summary reader (EventAccumulator on the folder) sees every tag and point.
  if (j.at("accumulator").is_null()) {
    std::cerr << "[ note ] this tensorboard has no event_accumulator; checked the file loader only\n";
  } else {
    const Json& acc = j.at("accumulator");
    size_t points = 0;
    for (const ScalarEvent& s : expected) {
      ASSERT_TRUE(acc.contains(s.tag)) << "EventAccumulator lacks tag " << s.tag << ": " << acc.dump();
      bool found = false;
      for (const Json& p : acc.at(s.tag))
        found = found || (p.at("step").get<int64_t>() == s.step && p.at("wall_time").get<double>() == s.wall_time &&
                          same_value(json_number(p.at("value")), s.value));
      EXPECT_TRUE(found) << s.tag << " step " << s.step << " in " << acc.at(s.tag).dump();
    }
    for (const auto& [tag, list] : acc.items()) points += list.size();
    EXPECT_EQ(points, expected.size()) << acc.dump();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace grpo::train
