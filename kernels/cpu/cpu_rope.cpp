// Rotary position embedding, forward and backward, over [T, H, D] with per-token positions.
//
// Per token t and pair i: angle = float(positions[t]) * inv_freq[i] (one f32 product, as
// Hugging Face's inv_freq @ position_ids), c = cos(angle) * scaling, s = sin(angle) * scaling,
// and the pair (a, b) becomes (a c - b s, b c + a s). The pair is (i, i + rot/2) for the half
// layout and (2i, 2i + 1) for the interleaved one; dimensions from rot_dim on are copied.
// The backward applies the transpose, scaling * R^T: (a c + b s, b c - a s).
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/checks_norm.h"
#include "kernels/cpu/cpu_ops.h"

namespace grpo {

namespace {

constexpr DType kF32[] = {DType::f32};

void check_rope(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in,
                const Tensor& positions, const RopeParams& p) {
  checks::rope(op, out_name, out, in_name, in, positions, p, Device::cpu, kF32);
  const int32_t* pos = positions.ptr<int32_t>();
  for (int64_t t = 0; t < in.shape[0]; ++t)
    GRPO_CHECK(pos[t] >= 0, op << ": positions[" << t << "] is " << pos[t] << ", expected >= 0");
}

// transpose = false: y = scaling * R x; true: y = scaling * R^T x.
void rotate(float* out, const float* in, const int32_t* pos, const RopeParams& p, int64_t T, int64_t H,
            bool transpose) {
  const int64_t D = p.head_dim, half = p.rot_dim / 2;
  const float* inv_freq = p.inv_freq.ptr<float>();
  const float scaling = p.attention_scaling;
  const float sin_sign = transpose ? -1.0f : 1.0f;
  const bool interleaved = p.layout == RopeLayout::interleaved;
  const bool copy_tail = out != in && p.rot_dim < D;
#pragma omp parallel if (T * H * D > (1 << 14))
  {
    std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float fpos = float(pos[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = fpos * inv_freq[i];
        cos_t[size_t(i)] = float(std::cos(double(angle))) * scaling;
        sin_t[size_t(i)] = float(std::sin(double(angle))) * scaling * sin_sign;
      }
      for (int64_t h = 0; h < H; ++h) {
        const float* x = in + (t * H + h) * D;
        float* y = out + (t * H + h) * D;
        // Index of the first and second member of pair i: (i, i + half) or (2i, 2i + 1).
        const int64_t stride = interleaved ? 2 : 1, offset = interleaved ? 1 : half;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t j = i * stride;
          const float a = x[j], b = x[j + offset], c = cos_t[size_t(i)], s = sin_t[size_t(i)];
          y[j] = a * c - b * s;
          y[j + offset] = b * c + a * s;
        }
        if (copy_tail)
          for (int64_t d = p.rot_dim; d < D; ++d) y[d] = x[d];
      }
    }
  }
}

}  // namespace

void CpuOps::rope(Tensor out, Tensor x, Tensor positions, const RopeParams& p) {
  GRPO_CPU_RECORD(rope(out, x, positions, p));
  check_rope("rope", "out", out, "x", x, positions, p);
  rotate(out.ptr<float>(), x.ptr<float>(), positions.ptr<int32_t>(), p, x.shape[0], x.shape[1], false);
}

void CpuOps::rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) {
  GRPO_CPU_RECORD(rope_backward(dx, dout, positions, p));
  check_rope("rope_backward", "dx", dx, "dout", dout, positions, p);
  rotate(dx.ptr<float>(), dout.ptr<float>(), positions.ptr<int32_t>(), p, dout.shape[0], dout.shape[1], true);
}

}  // namespace grpo
