#include "kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace grpo {

namespace {

// NOTES: Hugging Face evaluates the tables as float32 torch expressions on the CPU, one
// rounding per operation. Each helper below is one such f32 operation: computing in double
// and rounding once gives the correctly rounded f32 result for + - * / of two floats
// (53 >= 2 * 24 + 2), and the explicit rounding stops the compiler from fusing a multiply
// into the following add (FMA), which would skip a rounding torch performs.
float f32_add(float a, float b) { return float(double(a) + double(b)); }
float f32_sub(float a, float b) { return float(double(a) - double(b)); }
float f32_mul(float a, float b) { return float(double(a) * double(b)); }
float f32_div(float a, float b) { return float(double(a) / double(b)); }
// torch's `scalar / tensor` is tensor.reciprocal() * scalar.
float f32_rdiv(double scalar, float t) { return f32_mul(f32_div(1.0f, t), float(scalar)); }

// base ** (arange(0, dim, 2).float() / dim): a float32 exponent and the float32 rounding of
// the base (torch casts the Python scalar to the tensor's dtype).
std::vector<float> pos_freqs(double theta, int64_t dim) {
  std::vector<float> p(size_t(dim / 2));
  const double base = double(float(theta));
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = f32_div(float(2 * i), float(dim));
    p[size_t(i)] = float(std::pow(base, double(e)));
  }
  return p;
}

// _compute_default_rope_parameters: 1 / base^(2i / dim).
std::vector<float> default_inv_freq(double theta, int64_t dim) {
  std::vector<float> inv = pos_freqs(theta, dim);
  for (float& x : inv) x = f32_rdiv(1.0, x);
  return inv;
}

// _compute_llama3_parameters: low frequencies (wavelength above original / low_freq_factor)
// divided by factor, high frequencies (below original / high_freq_factor) kept, the band
// between interpolated smoothly.
void llama3_adjust(std::vector<float>& inv, const RopeScaling& s, int64_t original) {
  const double old_len = double(original);
  const float low_wavelen = float(old_len / s.low_freq_factor);
  const float high_wavelen = float(old_len / s.high_freq_factor);
  const float factor = float(s.factor);
  const float low = float(s.low_freq_factor);
  const float band = float(s.high_freq_factor - s.low_freq_factor);
  for (float& f : inv) {
    const float wavelen = f32_rdiv(2 * std::numbers::pi, f);
    const float llama = wavelen > low_wavelen ? f32_div(f, factor) : f;
    const float smooth = f32_div(f32_sub(f32_rdiv(old_len, wavelen), low), band);
    const float smoothed =
        f32_add(f32_div(f32_mul(f32_sub(1.0f, smooth), llama), factor), f32_mul(smooth, llama));
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    f = medium ? smoothed : llama;
  }
}

double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// Dimension (in units of the full rot_dim) whose wavelength makes `rotations` turns over the
// original context.
double yarn_correction_dim(double rotations, int64_t dim, double base, double original) {
  return (double(dim) * std::log(original / (rotations * 2 * std::numbers::pi))) / (2 * std::log(base));
}

// _compute_yarn_parameters: per pair, a blend of the interpolated (1 / (factor * base^e)) and
// extrapolated (1 / base^e) frequency, with a linear ramp over the correction range.
std::vector<float> yarn_inv_freq(double theta, int64_t dim, double factor, const RopeScaling& s,
                                 double original) {
  const std::vector<float> pos = pos_freqs(theta, dim);
  double low = yarn_correction_dim(s.beta_fast, dim, theta, original);
  double high = yarn_correction_dim(s.beta_slow, dim, theta, original);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  const float low_f = float(low);
  const float width = float(high - low);
  std::vector<float> inv(pos.size());
  for (size_t i = 0; i < pos.size(); ++i) {
    const float extrapolation = f32_rdiv(1.0, pos[i]);
    const float interpolation = f32_rdiv(1.0, f32_mul(float(factor), pos[i]));
    const float ramp = std::clamp(f32_div(f32_sub(float(i), low_f), width), 0.0f, 1.0f);
    const float extrapolation_weight = f32_sub(1.0f, ramp);
    inv[i] = f32_add(f32_mul(interpolation, f32_sub(1.0f, extrapolation_weight)),
                     f32_mul(extrapolation, extrapolation_weight));
  }
  return inv;
}

int64_t original_length(const RopeConfig& cfg) {
  const int64_t original = cfg.scaling.original_max_position_embeddings > 0
                               ? cfg.scaling.original_max_position_embeddings
                               : cfg.max_position_embeddings;
  GRPO_CHECK(original > 0, "rope_tables: rope type \"" << cfg.scaling.type
                               << "\" needs rope_scaling.original_max_position_embeddings or "
                                  "max_position_embeddings (both are "
                               << cfg.scaling.original_max_position_embeddings << " and "
                               << cfg.max_position_embeddings << ")");
  return original;
}

void check_factor(const std::string& type, double factor) {
  GRPO_CHECK(std::isfinite(factor) && factor >= 1.0,
             "rope_tables: rope_scaling.factor is " << factor << ", expected >= 1 for rope type \"" << type
                                                    << "\"");
}

}  // namespace

RopeTables rope_tables(const RopeConfig& cfg) {
  const RopeScaling& s = cfg.scaling;
  GRPO_CHECK(std::isfinite(cfg.theta) && cfg.theta > 1.0,
             "rope_tables: rope_theta is " << cfg.theta << ", expected a finite value > 1");
  GRPO_CHECK(cfg.head_dim > 0, "rope_tables: head_dim is " << cfg.head_dim << ", expected > 0");
  GRPO_CHECK(cfg.partial_rotary_factor > 0.0 && cfg.partial_rotary_factor <= 1.0,
             "rope_tables: partial_rotary_factor is " << cfg.partial_rotary_factor << ", expected in (0, 1]");
  RopeTables t;
  // Hugging Face: dim = int(head_dim * partial_rotary_factor), truncated.
  t.rot_dim = int64_t(double(cfg.head_dim) * cfg.partial_rotary_factor);
  GRPO_CHECK(t.rot_dim >= 2 && t.rot_dim % 2 == 0,
             "rope_tables: rotary dimension int(head_dim " << cfg.head_dim << " * partial_rotary_factor "
                                                            << cfg.partial_rotary_factor << ") = " << t.rot_dim
                                                            << " must be even and >= 2");
  const int64_t dim = t.rot_dim;

  if (s.type == "default") {
    t.inv_freq = default_inv_freq(cfg.theta, dim);
  } else if (s.type == "linear") {
    check_factor(s.type, s.factor);
    t.inv_freq = default_inv_freq(cfg.theta, dim);
    for (float& f : t.inv_freq) f = f32_div(f, float(s.factor));
  } else if (s.type == "llama3") {
    check_factor(s.type, s.factor);
    GRPO_CHECK(std::isfinite(s.low_freq_factor) && s.low_freq_factor > 0.0,
               "rope_tables: rope_scaling.low_freq_factor is " << s.low_freq_factor << ", expected > 0");
    GRPO_CHECK(std::isfinite(s.high_freq_factor) && s.high_freq_factor > s.low_freq_factor,
               "rope_tables: rope_scaling.high_freq_factor is "
                   << s.high_freq_factor << ", expected > rope_scaling.low_freq_factor (" << s.low_freq_factor
                   << ")");
    const int64_t original = original_length(cfg);
    t.inv_freq = default_inv_freq(cfg.theta, dim);
    llama3_adjust(t.inv_freq, s, original);
  } else if (s.type == "yarn") {
    const double original = double(original_length(cfg));
    double factor = s.factor;
    if (factor == 0.0) {
      GRPO_CHECK(cfg.max_position_embeddings > 0,
                 "rope_tables: rope_scaling.factor is 0 (derive) but max_position_embeddings is "
                     << cfg.max_position_embeddings);
      factor = double(cfg.max_position_embeddings) / original;
    }
    check_factor(s.type, factor);
    GRPO_CHECK(std::isfinite(s.beta_slow) && s.beta_slow > 0.0,
               "rope_tables: rope_scaling.beta_slow is " << s.beta_slow << ", expected > 0");
    GRPO_CHECK(std::isfinite(s.beta_fast) && s.beta_fast >= s.beta_slow,
               "rope_tables: rope_scaling.beta_fast is " << s.beta_fast << ", expected >= rope_scaling.beta_slow ("
                                                         << s.beta_slow << ")");
    GRPO_CHECK(std::isfinite(s.attention_factor) && s.attention_factor >= 0.0,
               "rope_tables: rope_scaling.attention_factor is " << s.attention_factor
                                                                << ", expected >= 0 (0: derive from factor)");
    GRPO_CHECK(std::isfinite(s.mscale) && std::isfinite(s.mscale_all_dim),
               "rope_tables: rope_scaling.mscale " << s.mscale << " and mscale_all_dim " << s.mscale_all_dim
                                                   << " must be finite");
    double attention = s.attention_factor;
    if (attention == 0.0) {
      attention = (s.mscale != 0.0 && s.mscale_all_dim != 0.0)
                      ? yarn_get_mscale(factor, s.mscale) / yarn_get_mscale(factor, s.mscale_all_dim)
                      : yarn_get_mscale(factor, 1.0);
    }
    t.attention_scaling = float(attention);
    t.inv_freq = yarn_inv_freq(cfg.theta, dim, factor, s, original);
  } else {
    GRPO_THROW("rope_tables: rope_scaling.type \"" << s.type
                                                   << "\" is not supported (supported: default, linear, llama3, yarn)");
  }
  return t;
}

RopeParams rope_params(const RopeConfig& cfg, const RopeTables& tables, Tensor inv_freq) {
  GRPO_CHECK(inv_freq.defined() && inv_freq.dtype == DType::f32 && inv_freq.ndim == 1 &&
                 inv_freq.shape[0] * 2 == tables.rot_dim,
             "rope_params: inv_freq is " << inv_freq.str() << ", expected f32[" << tables.rot_dim / 2 << "]");
  RopeParams p;
  p.head_dim = cfg.head_dim;
  p.rot_dim = tables.rot_dim;
  p.layout = cfg.layout;
  p.attention_scaling = tables.attention_scaling;
  p.inv_freq = inv_freq;
  return p;
}

}  // namespace grpo
