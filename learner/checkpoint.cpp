#include "learner/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "learner/optimizer.h"
#include "policy/model.h"
#include "policy/safetensors.h"

namespace grpo {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kMarker = "COMPLETE";
constexpr const char* kStateFile = "trainer_state/state.json";
constexpr const char* kOptimizerFile = "trainer_state/optimizer.safetensors";
constexpr const char* kTmpPrefix = ".tmp-step-";

// Tokenizer and generation files of a Hugging Face model directory, copied when present.
constexpr const char* kTokenizerFiles[] = {"tokenizer.json",   "tokenizer_config.json", "special_tokens_map.json",
                                           "added_tokens.json", "vocab.json",            "merges.txt",
                                           "tokenizer.model",   "chat_template.json",    "generation_config.json"};

// ---- CRC-32 (IEEE 802.3, the polynomial of zlib.crc32 and gzip), slicing by 8 -----------

struct Crc32Tables {
  uint32_t t[8][256];
  Crc32Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};

uint32_t crc32_update(uint32_t crc, const unsigned char* p, size_t n) {
  static const Crc32Tables tables;
  const auto& T = tables.t;
  auto le32 = [](const unsigned char* q) {
    return uint32_t(q[0]) | uint32_t(q[1]) << 8 | uint32_t(q[2]) << 16 | uint32_t(q[3]) << 24;
  };
  crc = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    const uint32_t a = crc ^ le32(p), b = le32(p + 4);
    crc = T[7][a & 0xff] ^ T[6][(a >> 8) & 0xff] ^ T[5][(a >> 16) & 0xff] ^ T[4][a >> 24] ^ T[3][b & 0xff] ^
          T[2][(b >> 8) & 0xff] ^ T[1][(b >> 16) & 0xff] ^ T[0][b >> 24];
  }
  for (; n > 0; ++p, --n) crc = T[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// ---- files ------------------------------------------------------------------------------

struct FileSum {
  uint64_t bytes = 0;
  uint32_t crc = 0;
};

// Reads `path` through, returning its size and CRC-32; with sync, also fsyncs it (so the
// checksum pass of a save doubles as its durability pass).
FileSum sum_file(const fs::path& path, bool sync) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  GRPO_CHECK(fd >= 0, path.string() << ": cannot open (" << std::strerror(errno) << ")");
  FileSum s;
  std::vector<unsigned char> buf(size_t(1) << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      GRPO_THROW(path.string() << ": read failed (" << std::strerror(e) << ")");
    }
    if (n == 0) break;
    s.crc = crc32_update(s.crc, buf.data(), size_t(n));
    s.bytes += uint64_t(n);
  }
  const bool ok = !sync || ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  GRPO_CHECK(ok, path.string() << ": fsync failed (" << std::strerror(e) << ")");
  return s;
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  GRPO_CHECK(fd >= 0, dir.string() << ": cannot open directory (" << std::strerror(errno) << ")");
  const bool ok = ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  GRPO_CHECK(ok, dir.string() << ": fsync failed (" << std::strerror(e) << ")");
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  GRPO_CHECK(out.good(), path.string() << ": cannot open for writing");
  out << text;
  out.flush();
  GRPO_CHECK(out.good(), path.string() << ": write failed");
}

Json read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), path.string() << ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return Json::parse(ss.str());
  } catch (const Json::exception& e) {
    GRPO_THROW(path.string() << ": not valid JSON (" << e.what() << ")");
  }
}

Json parse_field(const std::string& text, const char* what) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    GRPO_THROW("checkpoint: trainer state " << what << " is not valid JSON (" << e.what() << ")");
  }
}

// N of "step-N" (digits only), or -1.
int64_t step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return -1;
  int64_t n = -1;
  const char* b = name.data() + 5;
  const char* e = name.data() + name.size();
  auto [ptr, ec] = std::from_chars(b, e, n);
  return ec == std::errc() && ptr == e && std::all_of(b, e, [](char c) { return c >= '0' && c <= '9'; }) ? n : -1;
}

// Checkpoint directories step-N under `ckdir`, highest N first.
std::vector<std::pair<int64_t, fs::path>> list_steps(const fs::path& ckdir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(ckdir, ec)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(ckdir)) {
    const int64_t n = step_of(e.path().filename().string());
    if (n >= 0) out.emplace_back(n, e.path());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

std::string dump_shape(const std::vector<int64_t>& s) { return Json(s).dump(); }

// Where each moment tensor of the checkpoint goes in the flat buffer, every one checked
// against the model's table (name, f32, shape) before anything is copied.
struct MomentSlot {
  const SafetensorsTensorInfo* info;
  int64_t offset;
};

std::vector<MomentSlot> moment_slots(const SafetensorsFile& file, const ParamTable& table, const char* prefix) {
  std::vector<MomentSlot> out;
  for (const ParamEntry& e : table.entries()) {
    const std::string name = prefix + e.name;
    const SafetensorsTensorInfo* info = file.find(name);
    GRPO_CHECK(info != nullptr, file.path() << ": tensor \"" << name << "\" is missing");
    GRPO_CHECK(info->dtype == DType::f32 && info->shape == e.shape,
               file.path() << ": tensor \"" << name << "\" is " << dtype_name(info->dtype) << " of "
                           << dump_shape(info->shape) << ", expected f32 of " << dump_shape(e.shape));
    out.push_back({info, e.offset});
  }
  return out;
}

// The checkpoint must hold the model's exact architecture: same tensors and shapes, same
// config.json (torch_dtype aside), else resuming would silently compute something else.
void check_same_model(const fs::path& dir, const Model& model) {
  ModelConfig saved = load_model_config(dir.string());
  const ParamTable table(saved);
  const auto& a = table.entries();
  const auto& b = model.table().entries();
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    GRPO_CHECK(i < a.size(), dir.string() << ": checkpoint lacks parameter \"" << b[i].name << "\" of the model");
    GRPO_CHECK(i < b.size(), dir.string() << ": checkpoint has parameter \"" << a[i].name << "\" the model lacks");
    GRPO_CHECK(a[i].name == b[i].name && a[i].shape == b[i].shape,
               dir.string() << ": checkpoint parameter \"" << a[i].name << "\" " << dump_shape(a[i].shape)
                            << " does not match the model's \"" << b[i].name << "\" " << dump_shape(b[i].shape));
  }
  saved.torch_dtype = model.config().torch_dtype;
  const Json js = Json::parse(model_config_to_json_text(saved));
  const Json jm = Json::parse(model_config_to_json_text(model.config()));
  for (const auto& [k, v] : jm.items())
    GRPO_CHECK(js.contains(k) && js[k] == v, dir.string() << ": config.json \"" << k << "\" is "
                                                          << (js.contains(k) ? js[k].dump() : "absent")
                                                          << ", the model's is " << v.dump());
}

void copy_tokenizer_files(const fs::path& src, const fs::path& dst) {
  for (const char* name : kTokenizerFiles)
    if (fs::is_regular_file(src / name)) fs::copy_file(src / name, dst / name, fs::copy_options::overwrite_existing);
  for (const fs::directory_entry& e : fs::directory_iterator(src))
    if (e.is_regular_file() && e.path().extension() == ".jinja")
      fs::copy_file(e.path(), dst / e.path().filename(), fs::copy_options::overwrite_existing);
}

// Every regular file under `dir`, relative, sorted.
std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> out;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir).generic_string());
  std::sort(out.begin(), out.end());
  return out;
}

void write_checkpoint_files(const fs::path& tmp, const Model& model, const Optimizer& optimizer,
                            const TrainerState& state, const Json& cursor, const Json& config,
                            const CheckpointOptions& options) {
  model.save(tmp.string(), DType::f32);
  if (!options.tokenizer_dir.empty()) copy_tokenizer_files(options.tokenizer_dir, tmp);
  fs::create_directories(tmp / "trainer_state");

  // Moments through host staging, so one path serves every device.
  const ParamTable& table = model.table();
  const size_t n = size_t(table.size());
  std::vector<float> m(n), v(n);
  Allocator& alloc = model.ops().allocator();
  alloc.copy_to_host(m.data(), optimizer.m().data, n * sizeof(float));
  alloc.copy_to_host(v.data(), optimizer.v().data, n * sizeof(float));
  std::vector<SafetensorsWriteTensor> tensors;
  for (const auto& [prefix, buf] : {std::pair{"exp_avg.", &m}, std::pair{"exp_avg_sq.", &v}})
    for (const ParamEntry& e : table.entries())
      tensors.push_back({prefix + e.name, e.shape, buf->data() + e.offset, DType::f32, DType::f32});
  write_safetensors((tmp / kOptimizerFile).string(), tensors, {{"optimizer", "adamw"}});

  const Json st = {{"format_version", kCheckpointFormatVersion},
                   {"step", state.step},
                   {"optimizer_step", optimizer.step_count()},
                   {"rng", state.rng},
                   {"cursor", cursor},
                   {"config", config}};
  write_text(tmp / kStateFile, st.dump(2) + "\n");

  // Checksums (and fsync) of every file, then the marker, then the directories.
  Json files = Json::array();
  for (const std::string& rel : files_under(tmp)) {
    const FileSum s = sum_file(tmp / rel, /*sync=*/true);
    files.push_back({{"path", rel}, {"bytes", s.bytes}, {"crc32", s.crc}});
  }
  const Json marker = {{"format_version", kCheckpointFormatVersion}, {"step", state.step}, {"files", files}};
  write_text(tmp / kMarker, marker.dump(1) + "\n");
  sum_file(tmp / kMarker, /*sync=*/true);
  fsync_dir(tmp / "trainer_state");
  fsync_dir(tmp);
}

// Deletes step directories older than the newest `keep` complete ones (never `keep_path`).
void prune(const fs::path& ckdir, int64_t keep, const fs::path& keep_path) {
  if (keep <= 0) return;
  int64_t kept = 0, oldest_kept = -1;
  const auto steps = list_steps(ckdir);
  for (const auto& [n, path] : steps) {
    if (kept == keep) break;
    if (path == keep_path || verify_checkpoint(path.string(), /*check_contents=*/false).empty()) {
      ++kept;
      oldest_kept = n;
    }
  }
  for (const auto& [n, path] : steps) {
    if (n >= oldest_kept || path == keep_path) continue;
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) GRPO_LOG(warn, path.string() << ": cannot delete old checkpoint (" << ec.message() << ")");
  }
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, const Model& model, const Optimizer& optimizer,
                            const TrainerState& state, const CheckpointOptions& options) {
  // Every input is checked before the first byte is written.
  GRPO_CHECK(&optimizer.model() == &model, "checkpoint: the optimizer belongs to another model");
  GRPO_CHECK(state.step >= 0, "checkpoint: step " << state.step << " is negative");
  GRPO_CHECK(options.keep_last >= 0, "checkpoint: keep_last " << options.keep_last << " is negative");
  const Json cursor = parse_field(state.cursor, "cursor");
  const Json config = parse_field(state.config, "config");
  if (!options.tokenizer_dir.empty()) {
    const fs::path src = options.tokenizer_dir;
    GRPO_CHECK(fs::is_directory(src), "checkpoint: tokenizer_dir " << src.string() << " is not a directory");
    GRPO_CHECK(fs::is_regular_file(src / "tokenizer.json") || fs::is_regular_file(src / "tokenizer.model"),
               "checkpoint: tokenizer_dir " << src.string() << " has neither tokenizer.json nor tokenizer.model");
  }

  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  fs::create_directories(ckdir);
  // Leftovers of an interrupted save are garbage (one writer per run directory).
  for (const fs::directory_entry& e : fs::directory_iterator(ckdir))
    if (e.path().filename().string().rfind(kTmpPrefix, 0) == 0) fs::remove_all(e.path());

  const std::string name = "step-" + std::to_string(state.step);
  const fs::path final_dir = ckdir / name;
  const fs::path tmp = ckdir / (kTmpPrefix + std::to_string(state.step) + "-" + std::to_string(::getpid()));
  try {
    fs::create_directories(tmp);
    write_checkpoint_files(tmp, model, optimizer, state, cursor, config, options);
    if (fs::exists(final_dir)) {
      // Swap: the old step-N moves aside (still a .tmp, so never taken for a checkpoint).
      const fs::path old = ckdir / (kTmpPrefix + std::to_string(state.step) + "-old-" + std::to_string(::getpid()));
      fs::rename(final_dir, old);
      try {
        fs::rename(tmp, final_dir);
      } catch (...) {
        std::error_code ec;
        fs::rename(old, final_dir, ec);  // put the old one back
        throw;
      }
      fs::remove_all(old);
    } else {
      fs::rename(tmp, final_dir);
    }
    fsync_dir(ckdir);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    if (dynamic_cast<const Error*>(&e)) throw;
    GRPO_THROW("checkpoint " << final_dir.string() << ": " << e.what());
  }
  prune(ckdir, options.keep_last, final_dir);
  return final_dir.string();
}

std::string verify_checkpoint(const std::string& dir_str, bool check_contents) {
  const fs::path dir = dir_str;
  try {
    if (!fs::is_directory(dir)) return "not a directory";
    if (!fs::exists(dir / kMarker)) return "no COMPLETE marker (the save did not finish)";
    Json marker;
    try {
      marker = read_json(dir / kMarker);
    } catch (const Error& e) {
      return "COMPLETE marker is unreadable: " + e.message();
    }
    if (!marker.is_object() || !marker.contains("files") || !marker["files"].is_array() ||
        !marker.contains("format_version") || !marker["format_version"].is_number_integer())
      return "COMPLETE marker is malformed";
    const int64_t version = marker["format_version"];
    if (version > kCheckpointFormatVersion)
      return "format_version " + std::to_string(version) + " is newer than this build reads (" +
             std::to_string(kCheckpointFormatVersion) + ")";
    const int64_t named = step_of(dir.filename().string());
    if (named >= 0 && (!marker.contains("step") || marker["step"] != named))
      return "COMPLETE marker names another step (" + (marker.contains("step") ? marker["step"].dump() : "none") + ")";
    std::vector<std::string> listed;
    for (const Json& f : marker["files"]) {
      if (!f.is_object() || !f.contains("path") || !f["path"].is_string() || !f.contains("bytes") ||
          !f["bytes"].is_number_unsigned() || !f.contains("crc32") || !f["crc32"].is_number_unsigned())
        return "COMPLETE marker has a malformed file entry " + f.dump();
      const std::string rel = f["path"];
      listed.push_back(rel);
      const fs::path p = dir / rel;
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) return "file " + rel + " is missing";
      const uint64_t want = f["bytes"];
      const uint64_t have = fs::file_size(p, ec);
      if (ec) return "file " + rel + " is unreadable (" + ec.message() + ")";
      if (have != want)
        return "file " + rel + " has " + std::to_string(have) + " bytes, COMPLETE lists " + std::to_string(want) +
               " (truncated or rewritten)";
      if (check_contents) {
        FileSum s;
        try {
          s = sum_file(p, /*sync=*/false);
        } catch (const Error& e) {
          return "file " + rel + " is unreadable: " + e.message();
        }
        if (s.crc != f["crc32"].get<uint32_t>())
          return "file " + rel + " does not match its CRC-32 in COMPLETE (corrupted)";
      }
    }
    for (const char* required : {"config.json", kStateFile, kOptimizerFile})
      if (std::find(listed.begin(), listed.end(), required) == listed.end())
        return std::string("COMPLETE does not list ") + required;
    return "";
  } catch (const std::exception& e) {
    return std::string("unreadable (") + e.what() + ")";
  }
}

CheckpointScan find_latest_checkpoint(const std::string& run_dir) {
  CheckpointScan scan;
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(ckdir, ec)) return scan;
  auto skip = [&](const fs::path& p, const std::string& why) {
    scan.skipped.push_back(p.string() + ": " + why);
    GRPO_LOG(warn, "checkpoint skipped: " << scan.skipped.back());
  };
  for (const fs::directory_entry& e : fs::directory_iterator(ckdir, ec))
    if (e.path().filename().string().rfind(kTmpPrefix, 0) == 0) skip(e.path(), "left by an interrupted save");
  for (const auto& [n, path] : list_steps(ckdir)) {
    const std::string why = verify_checkpoint(path.string(), /*check_contents=*/true);
    if (!why.empty()) {
      skip(path, why);
      continue;
    }
    scan.path = path.string();
    scan.step = n;
    break;
  }
  return scan;
}

TrainerState load_checkpoint(const std::string& dir_str, Model& model, Optimizer& optimizer, bool verify) {
  const fs::path dir = dir_str;
  GRPO_CHECK(&optimizer.model() == &model, "checkpoint: the optimizer belongs to another model");
  if (verify) {
    const std::string why = verify_checkpoint(dir_str, /*check_contents=*/true);
    GRPO_CHECK(why.empty(), dir_str << ": not a usable checkpoint: " << why);
  }
  // Check everything first: a refused checkpoint must leave the model and optimizer as they were.
  const Json st = read_json(dir / kStateFile);
  const std::string src = (dir / kStateFile).string();
  auto field = [&](const char* key) -> const Json& {
    GRPO_CHECK(st.is_object() && st.contains(key), src << ": missing \"" << key << "\"");
    return st[key];
  };
  GRPO_CHECK(field("format_version").is_number_integer() && field("format_version").get<int64_t>() >= 1 &&
                 field("format_version").get<int64_t>() <= kCheckpointFormatVersion,
             src << ": format_version " << field("format_version").dump() << " is not one this build reads (1.."
                 << kCheckpointFormatVersion << ")");
  GRPO_CHECK(field("step").is_number_unsigned(), src << ": \"step\" must be a non-negative integer");
  GRPO_CHECK(field("optimizer_step").is_number_unsigned(),
             src << ": \"optimizer_step\" must be a non-negative integer");
  GRPO_CHECK(field("rng").is_object(), src << ": \"rng\" must be an object");
  TrainerState state;
  state.step = field("step").get<int64_t>();
  for (const auto& [k, v] : field("rng").items()) {
    GRPO_CHECK(v.is_number_unsigned(), src << ": \"rng." << k << "\" must be a non-negative integer");
    state.rng[k] = v.get<uint64_t>();
  }
  state.cursor = field("cursor").dump();
  state.config = field("config").dump();
  const int64_t optimizer_step = field("optimizer_step").get<int64_t>();

  check_same_model(dir, model);
  const SafetensorsFile moments = SafetensorsFile::open((dir / kOptimizerFile).string());
  const ParamTable& table = model.table();
  const std::vector<MomentSlot> m_slots = moment_slots(moments, table, "exp_avg.");
  const std::vector<MomentSlot> v_slots = moment_slots(moments, table, "exp_avg_sq.");
  GRPO_CHECK(moments.tensors().size() == m_slots.size() + v_slots.size(),
             moments.path() << ": " << moments.tensors().size() << " tensors, expected "
                            << m_slots.size() + v_slots.size() << " (exp_avg and exp_avg_sq of each parameter)");

  // Now write. Padding between tensors stays zero, as a fresh optimizer has it.
  model.load(dir_str);
  const size_t n = size_t(table.size());
  std::vector<float> host(n);
  Allocator& alloc = model.ops().allocator();
  for (const auto& [slots, dst] : {std::pair{&m_slots, optimizer.m()}, std::pair{&v_slots, optimizer.v()}}) {
    std::fill(host.begin(), host.end(), 0.0f);
    for (const MomentSlot& s : *slots) std::memcpy(host.data() + s.offset, moments.data(*s.info), s.info->nbytes);
    alloc.copy_from_host(dst.data, host.data(), n * sizeof(float));
  }
  optimizer.set_step_count(optimizer_step);
  return state;
}

TrainerState resume_from_run_dir(const std::string& run_dir, Model& model, Optimizer& optimizer, std::string* path) {
  const CheckpointScan scan = find_latest_checkpoint(run_dir);
  if (scan.path.empty()) {
    std::ostringstream why;
    for (const std::string& s : scan.skipped) why << "; skipped " << s;
    GRPO_THROW(run_dir << ": no complete checkpoint to resume from in " << (fs::path(run_dir) / "checkpoints").string()
                       << why.str());
  }
  if (path) *path = scan.path;
  return load_checkpoint(scan.path, model, optimizer, /*verify=*/false);
}

}  // namespace grpo
