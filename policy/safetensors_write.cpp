// Safetensors writing: one file atomically (PATH.tmp, fsync, rename, fsync of the directory),
// and whole checkpoints, single-file or sharded with model.safetensors.index.json.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "policy/safetensors.h"

namespace grpo {

namespace {

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Writes PATH.tmp and renames it over PATH on commit(); removes PATH.tmp if never committed.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    GRPO_CHECK(fd_ >= 0, path_ << ": cannot create " << tmp_ << ": " << std::strerror(errno));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  void write(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd_, c, n);
      if (w < 0 && errno == EINTR) continue;
      GRPO_CHECK(w > 0, path_ << ": cannot write " << tmp_ << ": " << std::strerror(w < 0 ? errno : EIO));
      c += w;
      n -= size_t(w);
    }
  }

  void commit() {
    GRPO_CHECK(::fsync(fd_) == 0, path_ << ": cannot fsync " << tmp_ << ": " << std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    GRPO_CHECK(rc == 0, path_ << ": cannot close " << tmp_ << ": " << std::strerror(errno));
    GRPO_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0,
               path_ << ": cannot rename " << tmp_ << " onto it: " << std::strerror(errno));
    committed_ = true;
    // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL).
    const std::string dir = parent_dir(path_);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    GRPO_CHECK(dfd >= 0, path_ << ": cannot open its directory " << dir << " to fsync: " << std::strerror(errno));
    const int src = ::fsync(dfd);
    const int serr = errno;
    ::close(dfd);
    GRPO_CHECK(src == 0 || serr == EINVAL, path_ << ": cannot fsync its directory " << dir << ": " << std::strerror(serr));
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Validates one tensor to write and returns its size on disk in bytes.
uint64_t checked_nbytes(const std::string& path, const SafetensorsWriteTensor& t) {
  const std::string where = path + ": tensor \"" + t.name + "\": ";
  GRPO_CHECK(!t.name.empty(), path << ": a tensor to write has an empty name");
  GRPO_CHECK(t.name != "__metadata__", where << "the name is reserved for the header's metadata");
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    GRPO_CHECK(d >= 0, where << "negative dimension " << d);
    GRPO_CHECK(!__builtin_mul_overflow(numel, uint64_t(d), &numel) &&
                   numel <= uint64_t(std::numeric_limits<int64_t>::max()),
               where << "shape has more elements than fit in 63 bits");
  }
  const bool same = t.src_dtype == t.dtype;
  const bool narrow = t.src_dtype == DType::f32 &&
                      (t.dtype == DType::bf16 || t.dtype == DType::f16 || t.dtype == DType::fp8_e4m3);
  const bool widen = t.dtype == DType::f32 &&
                     (t.src_dtype == DType::bf16 || t.src_dtype == DType::f16 || t.src_dtype == DType::fp8_e4m3);
  GRPO_CHECK(same || narrow || widen, where << "cannot store " << dtype_name(t.src_dtype) << " data as "
                                            << dtype_name(t.dtype)
                                            << " (same dtype, f32 -> bf16/f16/fp8_e4m3, or bf16/f16/fp8_e4m3 -> f32)");
  GRPO_CHECK(t.data || numel == 0, where << "data is null");
  uint64_t nbytes = 0;
  GRPO_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes),
             where << "needs more bytes than fit in 64 bits");
  return nbytes;
}

// Writes tensor `t` (numel elements) as t.dtype, converting through a bounded buffer.
void write_tensor_data(AtomicFile& out, const SafetensorsWriteTensor& t, uint64_t numel) {
  if (numel == 0) return;
  if (t.src_dtype == t.dtype) {
    out.write(t.data, size_t(numel * dtype_size(t.dtype)));
    return;
  }
  const auto* src = static_cast<const uint8_t*>(t.data);
  const size_t src_size = dtype_size(t.src_dtype), dst_size = dtype_size(t.dtype);
  constexpr size_t kChunk = 1 << 16;  // elements per conversion pass
  std::vector<uint8_t> buf(kChunk * dst_size);
  for (uint64_t start = 0; start < numel; start += kChunk) {
    const size_t n = size_t(std::min<uint64_t>(kChunk, numel - start));
    const uint8_t* s = src + start * src_size;
    for (size_t i = 0; i < n; ++i) {
      if (t.src_dtype == DType::f32) {
        float x;
        std::memcpy(&x, s + 4 * i, 4);
        if (t.dtype == DType::fp8_e4m3) {
          buf[i] = f32_to_fp8_e4m3(x);
        } else {
          const uint16_t h = t.dtype == DType::bf16 ? f32_to_bf16(x) : f32_to_f16(x);
          std::memcpy(&buf[2 * i], &h, 2);
        }
      } else {  // widening to f32
        float x;
        if (t.src_dtype == DType::fp8_e4m3) {
          x = fp8_e4m3_to_f32(s[i]);
        } else {
          uint16_t h;
          std::memcpy(&h, s + 2 * i, 2);
          x = t.src_dtype == DType::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        std::memcpy(&buf[4 * i], &x, 4);
      }
    }
    out.write(buf.data(), n * dst_size);
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

// model-00001-of-00002.safetensors and the like (any digit counts, as other writers widen them).
bool is_shard_name(const std::string& s) {
  const std::string pre = "model-", mid = "-of-", suf = ".safetensors";
  if (s.size() <= pre.size() + suf.size() || s.compare(0, pre.size(), pre) != 0 ||
      s.compare(s.size() - suf.size(), suf.size(), suf) != 0)
    return false;
  const std::string core = s.substr(pre.size(), s.size() - pre.size() - suf.size());
  const size_t m = core.find(mid);
  if (m == std::string::npos || m == 0 || m + mid.size() == core.size()) return false;
  for (size_t i = 0; i < core.size(); ++i) {
    if (i >= m && i < m + mid.size()) continue;
    if (core[i] < '0' || core[i] > '9') return false;
  }
  return true;
}

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i, n);
  return buf;
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    GRPO_THROW(path << ": cannot remove this stale checkpoint file: " << std::strerror(errno));
}

// Removes shards left by an earlier checkpoint (anything shard-named that was not just written).
void remove_stale_shards(const std::string& dir, const std::set<std::string>& keep) {
  std::error_code ec;
  std::vector<std::string> stale;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_shard_name(name) && !keep.count(name)) stale.push_back(name);
  }
  GRPO_CHECK(!ec, dir << ": cannot list the directory: " << ec.message());
  for (const std::string& name : stale) remove_file(dir + "/" + name);
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  std::map<std::string, std::string> merged{{"format", "pt"}};
  for (const auto& [k, v] : metadata) merged[k] = v;
  for (const auto& [k, v] : merged) meta[k] = v;
  header["__metadata__"] = std::move(meta);

  std::set<std::string> seen;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const SafetensorsWriteTensor& t : tensors) {
    const uint64_t nbytes = checked_nbytes(path, t);
    GRPO_CHECK(seen.insert(t.name).second, path << ": tensor \"" << t.name << "\" is given more than once");
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = safetensors_dtype_name(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {offset, offset + nbytes};
    header[t.name] = std::move(e);
    sizes.push_back(nbytes);
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // names or metadata that are not UTF-8
    GRPO_THROW(path << ": cannot encode the safetensors header: " << e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts at a multiple of 8

  AtomicFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    write_tensor_data(out, tensors[i], sizes[i] / dtype_size(tensors[i].dtype));
  out.commit();
}

std::vector<std::string> write_safetensors_checkpoint(const std::string& dir,
                                                      const std::vector<SafetensorsWriteTensor>& tensors,
                                                      uint64_t max_shard_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  GRPO_CHECK(!ec, dir << ": cannot create the checkpoint directory: " << ec.message());
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";

  // Group in order: a new shard starts when the next tensor would push this one past the limit.
  std::vector<std::vector<SafetensorsWriteTensor>> shards(1);
  std::set<std::string> seen;
  uint64_t total = 0, in_shard = 0;
  for (const SafetensorsWriteTensor& t : tensors) {
    const uint64_t nbytes = checked_nbytes(dir, t);
    GRPO_CHECK(seen.insert(t.name).second, dir << ": tensor \"" << t.name << "\" is given more than once");
    if (max_shard_bytes && !shards.back().empty() && nbytes > max_shard_bytes - std::min(in_shard, max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += nbytes;
    total += nbytes;
  }

  if (shards.size() == 1) {
    write_safetensors(single_path, tensors);
    remove_file(index_path);
    remove_stale_shards(dir, {});
    return {single_path};
  }

  std::vector<std::string> written;
  std::set<std::string> names;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = shard_name(i + 1, shards.size());
    for (const SafetensorsWriteTensor& t : shards[i]) weight_map[t.name] = name;
    write_safetensors(dir + "/" + name, shards[i]);
    written.push_back(dir + "/" + name);
    names.insert(name);
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
  write_text_atomic(index_path, index.dump(2) + "\n");  // the commit point of a sharded checkpoint
  written.push_back(index_path);
  remove_file(single_path);
  remove_stale_shards(dir, names);
  return written;
}

}  // namespace grpo
