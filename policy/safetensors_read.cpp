// Safetensors reading: one memory-mapped file, validated in full before any tensor is handed
// out (header length, JSON, dtypes, shapes, offsets, coverage of the data section).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "policy/safetensors.h"

namespace grpo {

static_assert(std::endian::native == std::endian::little, "safetensors IO assumes a little-endian host");

namespace {

using Json = nlohmann::json;

// The safetensors library refuses headers past 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  const char* disk;
  DType dtype;
};
constexpr DTypeName kDiskDTypes[] = {{"F32", DType::f32},     {"BF16", DType::bf16}, {"F16", DType::f16},
                                     {"F8_E4M3", DType::fp8_e4m3}, {"I32", DType::i32},  {"I64", DType::i64}};

// Reads a JSON number that must be a non-negative integer no larger than `max`.
bool json_uint(const Json& j, uint64_t max, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;  // negative -> number_integer, 1.5 / 1e30 -> number_float
  uint64_t v = j.get<uint64_t>();
  if (v > max) return false;
  *out = v;
  return true;
}

// Parses JSON text, rejecting duplicate keys at any depth (nlohmann would keep the last one),
// and returns the top-level object's keys in text order in `top_keys`. `what` names the text
// in messages ("safetensors header"); `item` names a top-level key ("tensor").
Json parse_json_strict(const std::string& path, const char* begin, const char* end, const char* what,
                       const char* item, std::vector<std::string>* top_keys) {
  struct Level {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Level> stack;
  std::string dup_key, dup_owner;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        stack.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case Json::parse_event_t::key: {
        if (stack.empty() || !parsed.is_string()) break;
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!stack.back().keys.insert(key).second && dup_key.empty()) {
          dup_key = key;
          dup_owner = stack.size() > 1 ? stack.front().last_key : "";
        }
        stack.back().last_key = key;
        if (stack.size() == 1 && top_keys) top_keys->push_back(key);
        break;
      }
      default:
        break;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(begin, end, callback);
  } catch (const Json::exception& e) {
    GRPO_THROW(path << ": " << what << " is not valid JSON: " << e.what());
  }
  if (!dup_key.empty()) {
    if (dup_owner.empty())
      GRPO_THROW(path << ": " << item << " \"" << dup_key << "\" appears more than once in the " << what);
    GRPO_THROW(path << ": " << item << " \"" << dup_owner << "\": key \"" << dup_key
                    << "\" appears more than once in the " << what);
  }
  GRPO_CHECK(j.is_object(), path << ": " << what << " is not a JSON object (it is a JSON " << j.type_name() << ")");
  return j;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const Json& j) {
  std::map<std::string, std::string> out;
  if (j.is_null()) return out;
  GRPO_CHECK(j.is_object(), path << ": \"__metadata__\" is not a JSON object of strings (it is a JSON "
                                 << j.type_name() << ")");
  for (const auto& [k, v] : j.items()) {
    GRPO_CHECK(v.is_string(), path << ": \"__metadata__\" value \"" << k << "\" is not a string (it is a JSON "
                                   << v.type_name() << ")");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

// One header entry -> info; checks everything that concerns this tensor alone.
SafetensorsTensorInfo parse_entry(const std::string& path, const std::string& name, const Json& e,
                                  uint64_t data_size) {
  const std::string where = path + ": tensor \"" + name + "\": ";
  GRPO_CHECK(e.is_object(), where << "header entry is not a JSON object (it is a JSON " << e.type_name() << ")");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    GRPO_CHECK(e.contains(field), where << "header entry has no \"" << field << "\"");

  SafetensorsTensorInfo info;
  info.name = name;
  const Json& dt = e["dtype"];
  GRPO_CHECK(dt.is_string(), where << "\"dtype\" is not a string");
  const std::string& dts = dt.get_ref<const std::string&>();
  const DTypeName* found = nullptr;
  for (const DTypeName& d : kDiskDTypes)
    if (dts == d.disk) found = &d;
  GRPO_CHECK(found, where << "unsupported dtype \"" << dts << "\" (supported: F32, BF16, F16, F8_E4M3, I32, I64)");
  info.dtype = found->dtype;

  const Json& shape = e["shape"];
  GRPO_CHECK(shape.is_array(), where << "\"shape\" is not a JSON array");
  uint64_t numel = 1;
  for (const Json& d : shape) {
    uint64_t dim = 0;
    GRPO_CHECK(json_uint(d, uint64_t(std::numeric_limits<int64_t>::max()), &dim),
               where << "shape " << shape.dump() << " has a dimension that is not a non-negative integer");
    GRPO_CHECK(!__builtin_mul_overflow(numel, dim, &numel) &&
                   numel <= uint64_t(std::numeric_limits<int64_t>::max()),
               where << "shape " << shape.dump() << " has more elements than fit in 63 bits");
    info.shape.push_back(int64_t(dim));
  }
  uint64_t nbytes = 0;
  GRPO_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(info.dtype)), &nbytes),
             where << "shape " << shape.dump() << " of " << dts << " needs more bytes than fit in 64 bits");

  const Json& offs = e["data_offsets"];
  uint64_t begin = 0, end = 0;
  GRPO_CHECK(offs.is_array() && offs.size() == 2 && json_uint(offs[0], ~uint64_t(0), &begin) &&
                 json_uint(offs[1], ~uint64_t(0), &end),
             where << "\"data_offsets\" is not [begin, end] of non-negative integers: " << offs.dump());
  GRPO_CHECK(begin <= end, where << "data_offsets [" << begin << ", " << end << "] end before they begin");
  GRPO_CHECK(end <= data_size, where << "data_offsets [" << begin << ", " << end
                                     << "] run past the end of the data section (" << data_size << " bytes)");
  GRPO_CHECK(end - begin == nbytes, where << "shape " << shape.dump() << " of " << dts << " needs " << nbytes
                                          << " bytes but data_offsets [" << begin << ", " << end << "] hold "
                                          << (end - begin));
  info.offset = begin;
  info.nbytes = nbytes;
  return info;
}

// Sorts by offset and checks that the ranges tile [0, data_size): no overlap, no hole, no tail.
void check_coverage(const std::string& path, std::vector<SafetensorsTensorInfo>& tensors, uint64_t data_size) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  uint64_t covered = 0;
  const SafetensorsTensorInfo* prev = nullptr;
  for (const SafetensorsTensorInfo& t : tensors) {
    const uint64_t end = t.offset + t.nbytes;  // <= data_size, checked per entry
    if (t.offset < covered) {
      GRPO_THROW(path << ": tensor \"" << t.name << "\": data_offsets [" << t.offset << ", " << end
                      << "] overlap tensor \"" << prev->name << "\" [" << prev->offset << ", "
                      << prev->offset + prev->nbytes << "]");
    }
    if (t.offset > covered) {
      GRPO_THROW(path << ": tensor \"" << t.name << "\": data_offsets [" << t.offset << ", " << end
                      << "] leave a hole of " << (t.offset - covered) << " bytes in the data section after "
                      << (prev ? "tensor \"" + prev->name + "\"" : std::string("its start")));
    }
    covered = end;
    prev = &t;
  }
  GRPO_CHECK(covered == data_size, path << ": the last " << (data_size - covered) << " bytes of the data section ("
                                        << data_size << " bytes) belong to no tensor"
                                        << (prev ? " (the last tensor, \"" + prev->name + "\", ends at " +
                                                       std::to_string(covered) + ")"
                                                 : std::string()));
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const DTypeName& d : kDiskDTypes)
    if (d.dtype == t) return d.disk;
  GRPO_THROW("safetensors: no on-disk name for dtype code " << int(t));
}

int64_t SafetensorsTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct SafetensorsFile::Impl {
  std::string path;
  void* map = nullptr;
  size_t map_size = 0;
  const uint8_t* data = nullptr;  // start of the data section
  uint64_t data_size = 0;
  std::vector<SafetensorsTensorInfo> tensors;
  std::unordered_map<std::string, size_t> by_name;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (map) munmap(map, map_size);
  }
};

SafetensorsFile::SafetensorsFile() : impl_(std::make_unique<Impl>()) {}
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  Impl& im = *f.impl_;
  im.path = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  GRPO_CHECK(fd >= 0, path << ": cannot open safetensors file: " << std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    GRPO_THROW(path << ": cannot stat safetensors file: " << std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    GRPO_THROW(path << ": not a regular file");
  }
  const uint64_t file_size = uint64_t(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    GRPO_THROW(path << ": truncated safetensors file: " << file_size
                    << " bytes, shorter than the 8-byte header length");
  }
  void* map = mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  GRPO_CHECK(map != MAP_FAILED, path << ": cannot mmap safetensors file: " << std::strerror(map_err));
  im.map = map;
  im.map_size = size_t(file_size);
  const uint8_t* bytes = static_cast<const uint8_t*>(map);

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  GRPO_CHECK(n <= kMaxHeaderBytes, path << ": safetensors header length " << n << " is absurd (limit "
                                        << kMaxHeaderBytes << " bytes)");
  GRPO_CHECK(n <= file_size - 8, path << ": safetensors header length " << n << " runs past the end of the file ("
                                      << file_size << " bytes)");
  GRPO_CHECK(n >= 2, path << ": safetensors header length " << n << " is too small for a JSON object");
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  std::vector<std::string> keys;  // header order
  const Json header = parse_json_strict(path, header_begin, header_begin + n, "safetensors header", "tensor", &keys);

  im.data = bytes + 8 + n;
  im.data_size = file_size - 8 - n;
  im.tensors.reserve(keys.size());
  for (const std::string& key : keys) {
    const Json& value = header.find(key).value();
    if (key == "__metadata__") {
      im.metadata = parse_metadata(path, value);
      continue;
    }
    im.tensors.push_back(parse_entry(path, key, value, im.data_size));
  }
  check_coverage(path, im.tensors, im.data_size);
  for (size_t i = 0; i < im.tensors.size(); ++i) im.by_name.emplace(im.tensors[i].name, i);
  return f;
}

const std::string& SafetensorsFile::path() const { return impl_->path; }
const std::vector<SafetensorsTensorInfo>& SafetensorsFile::tensors() const { return impl_->tensors; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

const SafetensorsTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = impl_->by_name.find(name);
  return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

const void* SafetensorsFile::data(const SafetensorsTensorInfo& info) const {
  GRPO_CHECK(info.offset <= impl_->data_size && info.nbytes <= impl_->data_size - info.offset,
             impl_->path << ": tensor \"" << info.name << "\": bytes [" << info.offset << ", "
                         << info.offset + info.nbytes << ") are not inside this file's data section");
  return impl_->data + info.offset;
}

// ---- SafetensorsCheckpoint ----

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), path << ": cannot open file: " << std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  GRPO_CHECK(!in.bad(), path << ": cannot read file");
  return ss.str();
}

// A shard name from the index must stay inside the checkpoint directory.
bool safe_shard_name(const std::string& s) {
  if (s.empty() || s.front() == '/') return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t slash = s.find('/', start);
    if (slash == std::string::npos) slash = s.size();
    if (s.compare(start, slash - start, "..") == 0 && slash - start == 2) return false;
    start = slash + 1;
  }
  return true;
}

}  // namespace

struct SafetensorsCheckpoint::Impl {
  std::string dir;
  std::vector<SafetensorsFile> files;
  struct Entry {
    size_t file = 0;
    const SafetensorsTensorInfo* info = nullptr;  // owned by files[file] (stable across moves)
  };
  std::map<std::string, Entry> entries;

  const Entry& get(const std::string& name) const {
    auto it = entries.find(name);
    GRPO_CHECK(it != entries.end(), dir << ": checkpoint has no tensor \"" << name << "\"");
    return it->second;
  }

  void open_single(const std::string& path) {
    files.push_back(SafetensorsFile::open(path));
    for (const SafetensorsTensorInfo& t : files[0].tensors()) entries[t.name] = Entry{0, &t};
  }

  void open_sharded(const std::string& index_path) {
    const std::string text = read_text_file(index_path);
    const Json index =
        parse_json_strict(index_path, text.data(), text.data() + text.size(), "checkpoint index", "key", nullptr);
    GRPO_CHECK(index.contains("weight_map") && index["weight_map"].is_object(),
               index_path << ": no \"weight_map\" object");
    const Json& weight_map = index["weight_map"];

    // Every shard opened once, in name order.
    std::map<std::string, std::vector<std::string>> by_shard;
    for (const auto& [name, shard] : weight_map.items()) {
      GRPO_CHECK(shard.is_string(), index_path << ": tensor \"" << name << "\": weight_map value is not a file name "
                                               << "(it is a JSON " << shard.type_name() << ")");
      const std::string& file = shard.get_ref<const std::string&>();
      GRPO_CHECK(safe_shard_name(file), index_path << ": tensor \"" << name << "\": shard name \"" << file
                                                   << "\" is empty, absolute or leaves the directory");
      by_shard[file].push_back(name);
    }
    for (const auto& [shard, names] : by_shard) {
      const std::string path = dir + "/" + shard;
      GRPO_CHECK(is_regular_file(path), index_path << ": shard \"" << shard << "\" (holding tensor \"" << names.front()
                                                   << "\") is missing: " << path);
      const size_t fi = files.size();
      files.push_back(SafetensorsFile::open(path));
      const SafetensorsFile& f = files.back();
      for (const std::string& name : names) {
        const SafetensorsTensorInfo* info = f.find(name);
        GRPO_CHECK(info, path << ": tensor \"" << name << "\" is listed for this shard in " << index_path
                              << " but the shard does not hold it");
        entries[name] = Entry{fi, info};
      }
      for (const SafetensorsTensorInfo& t : f.tensors()) {
        auto it = weight_map.find(t.name);
        GRPO_CHECK(it != weight_map.end() && it->is_string() && it->get_ref<const std::string&>() == shard,
                   path << ": unexpected tensor \"" << t.name << "\": " << index_path << " "
                        << (it == weight_map.end() ? std::string("does not list it")
                                                   : "lists it in " + it->dump()));
      }
    }
  }
};

SafetensorsCheckpoint::SafetensorsCheckpoint() : impl_(std::make_unique<Impl>()) {}
SafetensorsCheckpoint::SafetensorsCheckpoint(SafetensorsCheckpoint&&) noexcept = default;
SafetensorsCheckpoint& SafetensorsCheckpoint::operator=(SafetensorsCheckpoint&&) noexcept = default;
SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir) {
  SafetensorsCheckpoint c;
  c.impl_->dir = dir;
  const std::string index = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  if (is_regular_file(index)) {
    c.impl_->open_sharded(index);
  } else if (is_regular_file(single)) {
    c.impl_->open_single(single);
  } else {
    GRPO_THROW(dir << ": no safetensors checkpoint here (neither model.safetensors.index.json nor "
                      "model.safetensors is a file in this directory)");
  }
  return c;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(impl_->entries.size());
  for (const auto& kv : impl_->entries) out.push_back(kv.first);
  return out;
}

bool SafetensorsCheckpoint::has(const std::string& name) const { return impl_->entries.count(name) != 0; }

const SafetensorsTensorInfo& SafetensorsCheckpoint::info(const std::string& name) const {
  return *impl_->get(name).info;
}

const std::string& SafetensorsCheckpoint::file_of(const std::string& name) const {
  return impl_->files[impl_->get(name).file].path();
}

void SafetensorsCheckpoint::read_f32(const std::string& name, const std::vector<int64_t>& shape, float* dst) const {
  const Impl::Entry& e = impl_->get(name);
  const SafetensorsFile& f = impl_->files[e.file];
  const SafetensorsTensorInfo& t = *e.info;
  GRPO_CHECK(t.shape == shape, f.path() << ": tensor \"" << name << "\" has shape " << shape_str(t.shape)
                                        << " but shape " << shape_str(shape) << " was expected");
  const size_t n = size_t(t.numel());
  const auto* src = static_cast<const uint8_t*>(f.data(t));
  // NOTES: the mapping gives no alignment promise past the data section's start, so every
  // element is read with memcpy.
  switch (t.dtype) {
    case DType::f32:
      if (n) std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::bf16:
    case DType::f16: {
      const bool bf = t.dtype == DType::bf16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
      }
      return;
    }
    default:
      GRPO_THROW(f.path() << ": tensor \"" << name << "\" is " << safetensors_dtype_name(t.dtype)
                          << ", which read_f32 does not convert (it reads F32, BF16 and F16)");
  }
}

}  // namespace grpo
