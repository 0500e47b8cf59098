// `grpo bench ops`: GFLOP/s of the CPU backend's matmul, attention and MoE grouped matmul,
// each next to a peer measured in the same run on the same buffers (OpenBLAS sgemm called
// directly), so the ratio says what the op's own overhead costs.
//
// Timing: one warm-up call each, then calls of the op and its peer alternate until each has
// run for about min_seconds (at least three timed calls each); the best (shortest) call is
// reported, as it is the least disturbed by other processes on a shared machine.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "bench/bench.h"
#include "kernels/ops.h"

namespace grpo {

namespace {

using Json = nlohmann::ordered_json;  // keys in the order written

// Seconds of the fastest call of each fn (see the timing note at the top). The calls
// alternate between the fns, so a burst of load from other processes hits ours and its peer
// alike; each fn gets about min_seconds in total.
std::vector<double> time_best(const std::vector<std::function<void()>>& fns, double min_seconds) {
  using Clock = std::chrono::steady_clock;
  for (const auto& fn : fns) fn();  // warm-up: page faults, BLAS thread start-up, caches
  std::vector<double> best(fns.size(), 1e300);
  double total = 0.0;
  for (int reps = 0; total < min_seconds * double(fns.size()) || reps < 3; ++reps) {
    for (size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = Clock::now();
      fns[i]();
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      best[i] = std::min(best[i], s);
      total += s;
    }
  }
  return best;
}

double gflops(double flops, double seconds) { return std::round(flops / seconds * 1e-9 * 100.0) / 100.0; }
double ratio(double a, double b) { return b > 0.0 ? std::round(a / b * 1000.0) / 1000.0 : 0.0; }

std::vector<float> random_floats(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

Tensor f32(std::vector<float>& v, std::initializer_list<int64_t> shape) { return Tensor(v.data(), DType::f32, shape); }
Tensor i32(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  return Tensor(v.data(), DType::i32, shape);
}

// ---- matmul: a linear layer, out [m, n] = a [m, k] @ w[n, k]^T ---------------------------

struct MatmulSize {
  int64_t m, n, k;
};

Json bench_matmul(Ops& ops, const MatmulSize& s, double min_seconds) {
  auto a = random_floats(s.m * s.k, 1), w = random_floats(s.n * s.k, 2);
  std::vector<float> out(size_t(s.m * s.n));
  const Tensor ta = f32(a, {s.m, s.k}), tw = f32(w, {s.n, s.k}), tout = f32(out, {s.m, s.n});
  const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
  const auto t = time_best({[&] { ops.matmul(tout, ta, tw, Tensor{}, false, true, false); },
                            [&] {
                              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(s.m), int(s.n), int(s.k), 1.0f,
                                          a.data(), int(s.k), w.data(), int(s.k), 0.0f, out.data(), int(s.n));
                            }},
                           min_seconds);
  const double g = gflops(flops, t[0]), gb = gflops(flops, t[1]);
  return Json{{"m", s.m}, {"n", s.n}, {"k", s.k}, {"gflops", g}, {"blas_gflops", gb}, {"ratio_vs_blas", ratio(g, gb)}};
}

// ---- attention: causal GQA over `seqs` packed sequences of seq_len tokens ----------------

struct AttentionSize {
  int64_t seqs, seq_len, heads_q, heads_kv, head_dim;
};

Json bench_attention(Ops& ops, const AttentionSize& s, double min_seconds) {
  const int64_t T = s.seqs * s.seq_len, Hq = s.heads_q, Hkv = s.heads_kv, D = s.head_dim;
  auto q = random_floats(T * Hq * D, 3), k = random_floats(T * Hkv * D, 4), v = random_floats(T * Hkv * D, 5);
  auto dout = random_floats(T * Hq * D, 6);
  std::vector<float> out(q.size()), lse(size_t(T * Hq)), dq(q.size()), dk(k.size()), dv(v.size());
  std::vector<int32_t> cu(size_t(s.seqs + 1));
  for (int64_t i = 0; i <= s.seqs; ++i) cu[size_t(i)] = int32_t(i * s.seq_len);
  const Tensor tq = f32(q, {T, Hq, D}), tk = f32(k, {T, Hkv, D}), tv = f32(v, {T, Hkv, D});
  const Tensor tout = f32(out, {T, Hq, D}), tlse = f32(lse, {T, Hq}), tcu = i32(cu, {s.seqs + 1});
  const Tensor tdq = f32(dq, {T, Hq, D}), tdk = f32(dk, {T, Hkv, D}), tdv = f32(dv, {T, Hkv, D});
  const Tensor tdout = f32(dout, {T, Hq, D});
  const float scale = 1.0f / std::sqrt(float(D));
  // FLOPs, causal: per query head and sequence, QK^T and PV are 2 * L * L * D each over the
  // full square, halved by the causal mask: fwd = 4 * L * L * D / 2. The backward recomputes
  // the scores and does dV, dP, dQ, dK: counted as 2.5x the forward.
  const double L = double(s.seq_len);
  const double fwd_flops = double(s.seqs) * double(Hq) * 4.0 * L * L * double(D) / 2.0;
  const double bwd_flops = 2.5 * fwd_flops;
  const auto t = time_best({[&] { ops.attention(tout, tlse, tq, tk, tv, tcu, scale); },
                            [&] { ops.attention_backward(tdq, tdk, tdv, tdout, tq, tk, tv, tout, tlse, tcu, scale); }},
                           min_seconds);
  const double fwd = t[0], bwd = t[1];
  return Json{{"seqs", s.seqs},
              {"seq_len", s.seq_len},
              {"heads_q", Hq},
              {"heads_kv", Hkv},
              {"head_dim", D},
              {"gflops_fwd", gflops(fwd_flops, fwd)},
              {"gflops_bwd", gflops(bwd_flops, bwd)}};
}

// ---- MoE grouped matmul: rows routed to experts at random, next to one dense sgemm ---------

struct MoeSize {
  int64_t experts, rows, n, k;
};

Json bench_moe(Ops& ops, const MoeSize& s, double min_seconds) {
  const int64_t E = s.experts, R = s.rows;
  auto x = random_floats(R * s.k, 7), w = random_floats(E * s.n * s.k, 8);
  std::vector<float> out(size_t(R * s.n));
  // Each row goes to a uniformly random expert (fixed seed), like a balanced router:
  // uneven counts, and with many experts some may be empty.
  std::vector<int32_t> offsets(size_t(E + 1), 0);
  std::mt19937_64 rng(9);
  for (int64_t r = 0; r < R; ++r) ++offsets[size_t(1 + int64_t(rng() % uint64_t(E)))];
  for (int64_t e = 0; e < E; ++e) offsets[size_t(e + 1)] += offsets[size_t(e)];
  const Tensor tx = f32(x, {R, s.k}), tw = f32(w, {E, s.n, s.k}), tout = f32(out, {R, s.n});
  const Tensor toff = i32(offsets, {E + 1});
  const double flops = 2.0 * double(R) * double(s.n) * double(s.k);
  // Peer: the same FLOPs as one GEMM, every row against expert 0's weight.
  const auto t = time_best({[&] { ops.grouped_matmul(tout, tx, tw, toff); },
                            [&] {
                              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(R), int(s.n), int(s.k), 1.0f,
                                          x.data(), int(s.k), w.data(), int(s.k), 0.0f, out.data(), int(s.n));
                            }},
                           min_seconds);
  const double g = gflops(flops, t[0]), gd = gflops(flops, t[1]);
  return Json{{"experts", E},
              {"rows", R},
              {"n", s.n},
              {"k", s.k},
              {"gflops", g},
              {"dense_blas_gflops", gd},
              {"ratio_vs_dense", ratio(g, gd)}};
}

}  // namespace

std::string run_bench_ops(const BenchOpsOptions& options) {
  if (options.threads > 0) {
    omp_set_num_threads(options.threads);
    openblas_set_num_threads(options.threads);
  }
  // A smoke run must finish in a couple of seconds whatever --min-seconds says.
  const double min_seconds = options.quick ? std::min(options.min_seconds, 0.05) : options.min_seconds;

  std::vector<MatmulSize> matmuls;
  std::vector<AttentionSize> attentions;
  std::vector<MoeSize> moes;
  if (options.quick) {
    matmuls = {{64, 64, 64}, {33, 96, 80}};
    attentions = {{2, 64, 4, 2, 32}};
    moes = {{4, 128, 64, 64}};
  } else {
    // Sized for a small (2-core) CPU: a case takes milliseconds to tens of milliseconds.
    matmuls = {{256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {512, 2048, 512}, {512, 512, 2048}};
    attentions = {{4, 256, 8, 8, 64}, {4, 256, 8, 2, 64}};
    moes = {{8, 2048, 256, 512}, {32, 2048, 256, 512}, {64, 2048, 256, 512}};
  }

  auto ops = make_cpu_ops();
  Json doc;
  doc["backend"] = "cpu";
  doc["threads"] = omp_get_max_threads();
  doc["blas_threads"] = openblas_get_num_threads();
  doc["min_seconds"] = min_seconds;
  doc["timing"] = "best call after one warm-up; op and peer alternate for about min_seconds each";
  doc["matmul"] = Json::array();
  for (const auto& s : matmuls) doc["matmul"].push_back(bench_matmul(*ops, s, min_seconds));
  // Attention has no BLAS twin; its peer is the best sgemm rate OpenBLAS reached in this run.
  double blas_peak = 0;
  for (const auto& m : doc["matmul"]) blas_peak = std::max(blas_peak, m["blas_gflops"].get<double>());
  doc["blas_peak_gflops"] = blas_peak;
  doc["attention"] = Json::array();
  for (const auto& s : attentions) {
    Json a = bench_attention(*ops, s, min_seconds);
    if (blas_peak > 0) {
      a["fwd_ratio_vs_blas_peak"] = a["gflops_fwd"].get<double>() / blas_peak;
      a["bwd_ratio_vs_blas_peak"] = a["gflops_bwd"].get<double>() / blas_peak;
    }
    doc["attention"].push_back(std::move(a));
  }
  doc["moe_grouped_matmul"] = Json::array();
  for (const auto& s : moes) doc["moe_grouped_matmul"].push_back(bench_moe(*ops, s, min_seconds));
  return doc.dump(2);
}

}  // namespace grpo
