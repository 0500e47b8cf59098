// Counter-based RNG: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11), the generator cuRAND and PyTorch use on GPUs.
//
// Every draw is a pure function of (seed, stream, offset), so the CPU and CUDA backends
// produce the same numbers for the same triple, whatever the thread or batch layout:
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (offset low, offset high, stream low, stream high)
// One counter value yields four 32-bit words. PhiloxStream walks the offset forward and
// hands out the words in order.
#pragma once

#include <array>
#include <cstdint>

#include "core/dtype.h"  // GRPO_HD

namespace grpo {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

GRPO_HD constexpr PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kM0) * ctr[0];
    const uint64_t p1 = uint64_t(kM1) * ctr[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

// The four words at block `offset` of (seed, stream).
GRPO_HD constexpr PhiloxCounter philox_block(uint64_t seed, uint64_t stream, uint64_t offset) {
  return philox4x32_10({uint32_t(offset), uint32_t(offset >> 32), uint32_t(stream), uint32_t(stream >> 32)},
                       {uint32_t(seed), uint32_t(seed >> 32)});
}

// Uniform float in [0, 1) from the top 24 bits of a word (every value a multiple of 2^-24).
GRPO_HD constexpr float uniform_from_u32(uint32_t x) { return float(x >> 8) * 5.9604644775390625e-08f; }

class PhiloxStream {
 public:
  GRPO_HD constexpr PhiloxStream(uint64_t seed, uint64_t stream, uint64_t offset = 0)
      : seed_(seed), stream_(stream), offset_(offset) {}

  GRPO_HD constexpr uint32_t next_u32() {
    if (index_ == 4) {
      block_ = philox_block(seed_, stream_, offset_++);
      index_ = 0;
    }
    return block_[index_++];
  }
  GRPO_HD constexpr float uniform() { return uniform_from_u32(next_u32()); }
  // Block offset of the next unused block (for saving and restoring RNG state).
  GRPO_HD constexpr uint64_t offset() const { return offset_; }

 private:
  uint64_t seed_, stream_, offset_;
  PhiloxCounter block_{};
  int index_ = 4;
};

}  // namespace grpo
