#include "learner/train/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "core/log.h"
#include "proto/tensorboard.pb.h"

namespace grpo::train {

namespace fs = std::filesystem;

namespace {

// ---- CRC-32C (Castagnoli), one table lookup per byte ------------------------------------

constexpr uint32_t kCrc32cPoly = 0x82F63B78u;  // reflected 0x1EDC6F41
constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? kCrc32cPoly ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// ---- TFRecord framing -------------------------------------------------------------------

constexpr size_t kHeaderBytes = 8 + 4;  // uint64 length, uint32 masked CRC of the length
constexpr size_t kFooterBytes = 4;      // uint32 masked CRC of the data

void put_le32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}
void put_le64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}
uint32_t get_le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t get_le64(const unsigned char* p) { return uint64_t(get_le32(p)) | uint64_t(get_le32(p + 4)) << 32; }

// Appends one framed record holding `data` to `out`.
void append_record(std::string& out, const std::string& data) {
  std::string length;
  put_le64(length, uint64_t(data.size()));
  out += length;
  put_le32(out, masked_crc32c(length.data(), length.size()));
  out += data;
  put_le32(out, masked_crc32c(data.data(), data.size()));
}

std::string serialize(const tensorboard::Event& event) {
  std::string bytes;
  GRPO_ASSERT(event.SerializeToString(&bytes));
  return bytes;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string name(buf);
  for (char& c : name)  // a file-name component: no separators
    if (c == '/') c = '_';
  return name;
}

// Whether `s` is well-formed UTF-8 (Unicode table 3-7: no overlong forms, no surrogates,
// nothing past U+10FFFF); protobuf refuses to parse a string field that is not.
bool is_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char b = p[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
    }
    i += len;
  }
  return true;
}

// Double to the float TensorBoard stores; out-of-range finite values become +-inf (a plain
// conversion would be undefined behaviour there).
float to_simple_value(double v) {
  if (std::isfinite(v) && std::fabs(v) > double(std::numeric_limits<float>::max()))
    return v > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  return float(v);
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + kCrcMaskDelta;
}

// ---- writer -----------------------------------------------------------------------------

struct TensorBoardWriter::Impl {
  std::string path;
  FILE* file = nullptr;

  void write(const std::string& record) {
    if (std::fwrite(record.data(), 1, record.size(), file) != record.size()) {
      const int e = errno;
      GRPO_THROW(path << ": write failed (" << std::strerror(e) << ")");
    }
  }
};

TensorBoardWriter::TensorBoardWriter(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  GRPO_CHECK(!dir.empty(), "TensorBoard: the event file folder is empty");
  std::error_code ec;
  fs::create_directories(dir, ec);
  GRPO_CHECK(!ec, dir << ": cannot create the TensorBoard folder (" << ec.message() << ")");
  GRPO_CHECK(fs::is_directory(dir, ec), dir << ": not a directory (TensorBoard folder)");

  // The name must be new: O_EXCL, and a counter suffix when this process already made a file
  // in this folder in this second (the suffix sorts after the plain name, as TensorBoard
  // reads the files of a folder in name order).
  const double now = unix_now();
  const std::string base = (fs::path(dir) / ("events.out.tfevents." + std::to_string(int64_t(now)) + "." +
                                             host_name() + "." + std::to_string(::getpid()) + ".grpo"))
                               .string();
  int fd = -1;
  for (int n = 0; fd < 0; ++n) {
    impl_->path = n == 0 ? base : base + "." + std::to_string(n);
    fd = ::open(impl_->path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && !(errno == EEXIST && n < 1000))
      GRPO_THROW(impl_->path << ": cannot create the TensorBoard event file (" << std::strerror(errno) << ")");
  }
  impl_->file = ::fdopen(fd, "wb");
  if (impl_->file == nullptr) {
    const int e = errno;
    ::close(fd);
    GRPO_THROW(impl_->path << ": cannot open the TensorBoard event file (" << std::strerror(e) << ")");
  }

  tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  std::string record;
  append_record(record, serialize(event));
  impl_->write(record);
  flush();  // the file is a valid (empty) event file from the start
}

TensorBoardWriter::~TensorBoardWriter() {
  if (impl_ == nullptr || impl_->file == nullptr) return;
  try {
    flush();
  } catch (const Error& e) {
    GRPO_LOG(warn, e.message());
  }
  std::fclose(impl_->file);
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  GRPO_CHECK(!tag.empty(), impl_->path << ": TensorBoard scalar with an empty tag (step " << step << ")");
  GRPO_CHECK(is_utf8(tag), impl_->path << ": TensorBoard tag is not valid UTF-8 (step " << step << ")");
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::SummaryValue* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(to_simple_value(value));
  std::string record;
  append_record(record, serialize(event));
  impl_->write(record);
}

void TensorBoardWriter::flush() {
  if (std::fflush(impl_->file) != 0 || std::ferror(impl_->file)) {
    const int e = errno;
    std::clearerr(impl_->file);
    GRPO_THROW(impl_->path << ": write failed (" << std::strerror(e) << ")");
  }
}

const std::string& TensorBoardWriter::path() const { return impl_->path; }

// ---- readers ----------------------------------------------------------------------------

std::vector<TfRecord> read_tfrecords(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), path << ": cannot open (" << std::strerror(errno) << ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  GRPO_CHECK(!in.bad(), path << ": read failed");
  const std::string bytes = ss.str();
  const auto* base = reinterpret_cast<const unsigned char*>(bytes.data());

  std::vector<TfRecord> records;
  size_t offset = 0;
  while (offset < bytes.size()) {
    const size_t left = bytes.size() - offset;
    GRPO_CHECK(left >= kHeaderBytes, path << ": truncated TFRecord at byte offset " << offset << " (" << left
                                          << " bytes left, a record header is " << kHeaderBytes << ")");
    const unsigned char* p = base + offset;
    TfRecord r;
    const uint64_t length = get_le64(p);
    r.length_crc_ok = masked_crc32c(p, 8) == get_le32(p + 8);
    const size_t avail = left - kHeaderBytes;  // data + data CRC must fit in this
    if (avail < kFooterBytes || length > avail - kFooterBytes) {
      // A length that runs past the end: a torn record, or (with a bad length CRC) garbage.
      GRPO_CHECK(r.length_crc_ok, path << ": corrupt TFRecord at byte offset " << offset
                                       << " (length CRC mismatch, length " << length << ")");
      GRPO_THROW(path << ": truncated TFRecord at byte offset " << offset << " (data of " << length
                      << " bytes plus its CRC, " << avail << " bytes left)");
    }
    r.data.assign(reinterpret_cast<const char*>(p + kHeaderBytes), size_t(length));
    r.data_crc_ok = masked_crc32c(r.data.data(), r.data.size()) == get_le32(p + kHeaderBytes + length);
    records.push_back(std::move(r));
    offset += kHeaderBytes + size_t(length) + kFooterBytes;
  }
  return records;
}

EventFileContents read_event_file(const std::string& path) {
  const std::vector<TfRecord> records = read_tfrecords(path);
  GRPO_CHECK(!records.empty(), path << ": empty event file (no file_version record)");
  EventFileContents out;
  size_t offset = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const TfRecord& r = records[i];
    GRPO_CHECK(r.length_crc_ok && r.data_crc_ok, path << ": record " << i << " at byte offset " << offset
                                                     << ": CRC mismatch (" << (r.length_crc_ok ? "data" : "length")
                                                     << ")");
    tensorboard::Event event;
    GRPO_CHECK(event.ParseFromString(r.data),
               path << ": record " << i << " at byte offset " << offset << ": not an Event message");
    if (i == 0) {
      GRPO_CHECK(event.what_case() == tensorboard::Event::kFileVersion,
                 path << ": the first record is not a file_version Event");
      out.file_version = event.file_version();
    } else if (event.what_case() == tensorboard::Event::kSummary) {
      for (const tensorboard::SummaryValue& v : event.summary().value())
        out.scalars.push_back(ScalarEvent{v.tag(), double(v.simple_value()), event.step(), event.wall_time()});
    }
    offset += kHeaderBytes + r.data.size() + kFooterBytes;
  }
  return out;
}

}  // namespace grpo::train
