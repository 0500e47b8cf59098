#include "core/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace grpo {

namespace {

thread_local bool t_capturing = false;

void refuse_while_capturing(const char* what) {
  GRPO_CHECK(!t_capturing, "cpu allocator: " << what << " while this thread captures a graph (it would happen "
                                             << "once now, not at each replay)");
}

class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu; }
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    refuse_while_capturing("an allocation");
    size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded);
    GRPO_CHECK(p != nullptr, "cpu allocator: out of memory allocating " << bytes << " bytes");
    return p;
  }
  void deallocate(void* p, size_t) noexcept override { std::free(p); }
  void memset_zero(void* p, size_t bytes) override {
    if (!bytes) return;
    refuse_while_capturing("a memset");
    std::memset(p, 0, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    refuse_while_capturing("a copy to the host");
    std::memcpy(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    refuse_while_capturing("a copy from the host");
    std::memcpy(dst, src, bytes);
  }
};

}  // namespace

void set_cpu_capturing_thread(bool capturing) { t_capturing = capturing; }

Allocator& cpu_allocator() {
  static CpuAllocator a;
  return a;
}

Buffer::Buffer(Allocator& alloc, size_t bytes) : alloc_(&alloc), data_(alloc.allocate(bytes)), bytes_(bytes) {}

Buffer::~Buffer() {
  if (alloc_ && data_) alloc_->deallocate(data_, bytes_);
}

Buffer::Buffer(Buffer&& o) noexcept
    : alloc_(std::exchange(o.alloc_, nullptr)), data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (alloc_ && data_) alloc_->deallocate(data_, bytes_);
    alloc_ = std::exchange(o.alloc_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void Buffer::zero() {
  if (alloc_ && data_) alloc_->memset_zero(data_, bytes_);
}

Tensor Buffer::view(DType dtype, std::initializer_list<int64_t> shape, size_t byte_offset) const {
  Tensor t(static_cast<char*>(data_) + byte_offset, dtype, shape, device());
  GRPO_CHECK(byte_offset <= bytes_ && t.nbytes() <= bytes_ - byte_offset,
             "buffer view " << t.str() << " at byte " << byte_offset << " does not fit in a buffer of "
                            << bytes_ << " bytes");
  return t;
}

Arena::Arena(Allocator& alloc, size_t capacity_bytes) : buffer_(alloc, capacity_bytes) {}

Tensor Arena::alloc(DType dtype, std::initializer_list<int64_t> shape) {
  return alloc(dtype, shape.begin(), int(shape.size()));
}

Tensor Arena::alloc(DType dtype, const int64_t* shape, int ndim) {
  Tensor t(nullptr, dtype, shape, ndim, buffer_.device());
  size_t start = (used_ + kAlignment - 1) / kAlignment * kAlignment;
  size_t bytes = t.nbytes();
  GRPO_CHECK(start <= buffer_.size() && bytes <= buffer_.size() - start,
             "arena: cannot allocate " << t.str() << " (" << bytes << " bytes): " << used_ << " of "
                                       << buffer_.size() << " bytes in use; size the arena for the largest batch");
  t.data = static_cast<char*>(buffer_.data()) + start;
  used_ = start + bytes;
  if (used_ > peak_) peak_ = used_;
  return t;
}

void Arena::release(size_t mark) {
  GRPO_CHECK(mark <= used_, "arena: release to " << mark << " but only " << used_ << " bytes in use");
  used_ = mark;
}

}  // namespace grpo
