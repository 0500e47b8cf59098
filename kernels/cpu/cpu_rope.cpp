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

#include "kernels/cpu/cpu_ops.h"
#include "kernels/op_checks.h"

namespace grpo {

namespace {

void check_rope(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in,
                const Tensor& positions, const RopeParams& p) {
  checks::tensor(op, in_name, in, DType::f32, Device::cpu, 3);
  checks::same(op, in_name, in, out_name, out);
  const int64_t T = in.shape[0], D = in.shape[2];
  GRPO_CHECK(p.head_dim == D, op << ": " << in_name << " is " << in.str() << " but head_dim is " << p.head_dim);
  GRPO_CHECK(p.rot_dim >= 2 && p.rot_dim % 2 == 0 && p.rot_dim <= D,
             op << ": rot_dim is " << p.rot_dim << ", expected even, >= 2 and <= head_dim " << D);
  checks::tensor(op, "inv_freq", p.inv_freq, DType::f32, Device::cpu, 1);
  GRPO_CHECK(p.inv_freq.shape[0] * 2 == p.rot_dim,
             op << ": inv_freq is " << p.inv_freq.str() << ", expected [" << p.rot_dim / 2 << "] (rot_dim "
                << p.rot_dim << " / 2)");
  GRPO_CHECK(std::isfinite(p.attention_scaling),
             op << ": attention_scaling is " << p.attention_scaling << ", expected a finite value");
  checks::shape(op, "positions", positions, DType::i32, Device::cpu, {T});
  const int32_t* pos = positions.ptr<int32_t>();
  for (int64_t t = 0; t < T; ++t)
    GRPO_CHECK(pos[t] >= 0, op << ": positions[" << t << "] is " << pos[t] << ", expected >= 0");
  // In place (same data) or disjoint; a partial overlap would read rotated values.
  const auto* ob = static_cast<const char*>(out.data);
  const auto* ib = static_cast<const char*>(in.data);
  GRPO_CHECK(ob == ib || ob + out.nbytes() <= ib || ib + in.nbytes() <= ob,
             op << ": " << out_name << " partially overlaps " << in_name << " (only exact aliasing is allowed)");
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
  check_rope("rope", "out", out, "x", x, positions, p);
  rotate(out.ptr<float>(), x.ptr<float>(), positions.ptr<int32_t>(), p, x.shape[0], x.shape[1], false);
}

void CpuOps::rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) {
  check_rope("rope_backward", "dx", dx, "dout", dout, positions, p);
  rotate(dx.ptr<float>(), dout.ptr<float>(), positions.ptr<int32_t>(), p, dout.shape[0], dout.shape[1], true);
}

}  // namespace grpo
