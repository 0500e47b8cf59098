// CUDA matmul family against the CPU backend on the same inputs: matmul (every transpose
// combination, 2-D and batched 3-D, bias, accumulate) and its backward (each accumulate flag,
// undefined gradients), embedding and its scatter-add backward (repeated and hot ids), and the
// MoE grouped matmul with empty experts and an expert holding every row. f32 and bf16 (bf16
// inputs rounded first, so both backends see the same values), and the mixed case of bf16
// inputs with f32 results (out, db, dbias, dw). Odd sizes from {1, 7, 33, 129, 257}.
// The grouped matmul's two forward paths (kernels/cuda/cuda_grouped_rows.cu for at most
// kDeviceGroupedMaxRows rows and while capturing, cuBLAS above) on both sides of the threshold,
// its vector and scalar loads (K a multiple of the 16-byte vector or not, misaligned
// pointers), and a captured graph replayed on new data and new offsets.
// Errors: the CPU's messages for bad shapes and dtypes, host tensors, and the device-side
// checks (ids out of range, bad expert offsets, also from a graph's replay).
#include <algorithm>
#include <climits>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...


// f32 everywhere: 1e-5; any bf16 tensor involved: 1e-2.
double tol_of(std::initializer_list<DType> dts) {
  for (DType d : dts)
    if (d == DType::bf16) return cudatest::tol(DType::bf16);
  return cudatest::tol(DType::f32);
}

// A tensor held on both sides: host values (rounded to the device dtype) and the device copy.
// For an ASSIGNED output the device copy is poisoned; for an accumulating one it holds h.
struct Pair {
  std::vector<float> h;
  std::vector<int64_t> shape;
  Dev d;
  Tensor host() { return host_view(h, shape); }
  Tensor dev() const { return d.t; }
};

Pair input(const std::vector<int64_t>& shape, DType dt, uint64_t seed) {
  Pair p{randu(size_t(cudatest::numel_of(shape)), seed), shape, {}};
  round_to(p.h, dt);
  p.d = upload(p.h, shape, dt);
  return p;
}
Pair assigned(const std::vector<int64_t>& shape, DType dt) {
  return Pair{std::vector<float>(size_t(cudatest::numel_of(shape)), 0.0f), shape, poisoned(dt, shape)};
}
// Accumulating outputs start from random values (so += shows), assigned ones are poisoned.
Pair output(const std::vector<int64_t>& shape, DType dt, bool accumulate, uint64_t seed) {
  return accumulate ? input(shape, dt, seed) : assigned(shape, dt);
}

std::string dts(DType in, DType out) { return std::string(dtype_name(in)) + "->" + dtype_name(out); }

// ---- matmul ----------------------------------------------------------------------------

struct MatmulCase {
  int64_t M, N, K;
  bool ta, tb;
  int64_t batch = 0;  // 0: 2-D
  std::vector<int64_t> shape(int64_t r, int64_t c) const {
    return batch ? std::vector<int64_t>{batch, r, c} : std::vector<int64_t>{r, c};
  }
  std::vector<int64_t> a_shape() const { return ta ? shape(K, M) : shape(M, K); }
  std::vector<int64_t> b_shape() const { return tb ? shape(N, K) : shape(K, N); }
  std::vector<int64_t> out_shape() const { return shape(M, N); }
  std::string str() const {
    return "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
           " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " batch=" + std::to_string(batch);
  }
};

// Shapes covering every size of {1, 7, 33, 129, 257} in each of M, N and K.
const int64_t kShapes[][3] = {{1, 1, 1},     {7, 33, 129}, {33, 7, 1},    {129, 257, 7},
                              {257, 129, 33}, {1, 257, 257}, {257, 1, 7}, {33, 129, 257}};

void check_matmul(const MatmulCase& c, DType in, DType out_dt, bool with_bias, DType bias_dt, bool accumulate,
                  uint64_t seed) {
  SCOPED_TRACE(c.str() + " " + dts(in, out_dt) + (with_bias ? " bias" : "") + (accumulate ? " accumulate" : ""));
  Pair a = input(c.a_shape(), in, seed), b = input(c.b_shape(), in, seed + 1);
  Pair bias = with_bias ? input({c.N}, bias_dt, seed + 2) : Pair{};
  Pair out = output(c.out_shape(), out_dt, accumulate, seed + 3);
  cpu().matmul(out.host(), a.host(), b.host(), with_bias ? bias.host() : Tensor{}, c.ta, c.tb, accumulate);
  gpu().matmul(out.dev(), a.dev(), b.dev(), with_bias ? bias.dev() : Tensor{}, c.ta, c.tb, accumulate);
  EXPECT_REL("matmul out", download(out.dev()), out.h, tol_of({in, out_dt, bias_dt}));
}

TEST(CudaMatmul, ForwardAllTransposesAndOddSizes) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const auto& s : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [in, out] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::bf16},
                               std::pair{DType::bf16, DType::f32}})
          check_matmul({s[0], s[1], s[2], ta, tb}, in, out, false, in, false, seed += 10);
}

TEST(CudaMatmul, ForwardBiasAndAccumulate) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 1000;
  for (const MatmulCase& c : {MatmulCase{7, 33, 129, false, true}, MatmulCase{129, 257, 7, true, false},
                              MatmulCase{1, 7, 33, true, true}})
    for (bool bias : {false, true})
      for (bool acc : {false, true}) {
        check_matmul(c, DType::f32, DType::f32, bias, DType::f32, acc, seed += 10);
        check_matmul(c, DType::bf16, DType::bf16, bias, DType::bf16, acc, seed += 10);
        check_matmul(c, DType::bf16, DType::f32, bias, DType::f32, acc, seed += 10);
        check_matmul(c, DType::bf16, DType::bf16, bias, DType::f32, acc, seed += 10);  // f32 bias, bf16 out
      }
}

TEST(CudaMatmul, BatchedForward) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 2000;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (DType in : {DType::f32, DType::bf16}) {
        check_matmul({33, 7, 129, ta, tb, 3}, in, in, true, in, false, seed += 10);
        check_matmul({129, 33, 7, ta, tb, 2}, in, DType::f32, false, in, true, seed += 10);
        check_matmul({1, 257, 33, ta, tb, 1}, in, in, false, in, false, seed += 10);
      }
}

// K = 0: the product is all zeros (out = bias, or unchanged when accumulating).
TEST(CudaMatmul, EmptyInnerDimension) {
  GRPO_REQUIRE_GPU();
  for (bool acc : {false, true}) {
    check_matmul({7, 33, 0, false, false}, DType::f32, DType::f32, true, DType::f32, acc, 77);
    check_matmul({7, 33, 0, true, true, 2}, DType::bf16, DType::bf16, false, DType::bf16, acc, 78);
  }
}

struct BackwardFlags {
  bool da = true, db = true, dbias = true;
  bool acc_da = false, acc_db = true;
};

void check_matmul_backward(const MatmulCase& c, DType in, DType grad_dt, BackwardFlags f, uint64_t seed) {
  SCOPED_TRACE(c.str() + " " + dts(in, grad_dt) + " da=" + std::to_string(f.da) + " db=" + std::to_string(f.db) +
               " dbias=" + std::to_string(f.dbias) + " acc_da=" + std::to_string(f.acc_da) +
               " acc_db=" + std::to_string(f.acc_db));
  Pair a = input(c.a_shape(), in, seed), b = input(c.b_shape(), in, seed + 1);
  Pair dout = input(c.out_shape(), in, seed + 2);
  Pair da = output(c.a_shape(), in, f.acc_da, seed + 3);
  Pair db = output(c.b_shape(), grad_dt, f.acc_db, seed + 4);
  Pair dbias = output({c.N}, grad_dt, f.acc_db, seed + 5);
  cpu().matmul_backward(f.da ? da.host() : Tensor{}, f.db ? db.host() : Tensor{}, f.dbias ? dbias.host() : Tensor{},
                        dout.host(), a.host(), b.host(), c.ta, c.tb, f.acc_da, f.acc_db);
  gpu().matmul_backward(f.da ? da.dev() : Tensor{}, f.db ? db.dev() : Tensor{}, f.dbias ? dbias.dev() : Tensor{},
                        dout.dev(), a.dev(), b.dev(), c.ta, c.tb, f.acc_da, f.acc_db);
  if (f.da) {
    EXPECT_REL("da", download(da.dev()), da.h, tol_of({in}));
  }
  if (f.db) {
    EXPECT_REL("db", download(db.dev()), db.h, tol_of({in, grad_dt}));
  }
  if (f.dbias) {
    EXPECT_REL("dbias", download(dbias.dev()), dbias.h, tol_of({in, grad_dt}));
  }
}

TEST(CudaMatmul, BackwardAllTransposesAndOddSizes) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 3000;
  for (const auto& s : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [in, grad] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::bf16},
                                std::pair{DType::bf16, DType::f32}})
          check_matmul_backward({s[0], s[1], s[2], ta, tb}, in, grad, {}, seed += 10);
}

TEST(CudaMatmul, BackwardAccumulateFlagsAndUndefinedGradients) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 4000;
  const MatmulCase c{33, 129, 7, false, true};
  for (DType in : {DType::f32, DType::bf16})
    for (bool acc_da : {false, true})
      for (bool acc_db : {false, true}) check_matmul_backward(c, in, in, {true, true, true, acc_da, acc_db}, seed += 10);
  for (BackwardFlags f : {BackwardFlags{true, false, false}, BackwardFlags{false, true, false},
                          BackwardFlags{false, false, true}, BackwardFlags{false, false, false}})
    check_matmul_backward(c, DType::f32, DType::f32, f, seed += 10);
}

TEST(CudaMatmul, BatchedBackwardAndLongBiasReduction) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 5000;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_matmul_backward({33, 7, 129, ta, tb, 3}, DType::f32, DType::f32, {}, seed += 10);
      check_matmul_backward({129, 33, 7, ta, tb, 2}, DType::bf16, DType::f32, {true, true, true, true, false},
                            seed += 10);
    }
  // 2052 rows of dout: the bias gradient is summed over many row chunks.
  check_matmul_backward({513, 300, 7, false, true, 4}, DType::f32, DType::f32, {false, false, true}, seed += 10);
  check_matmul_backward({4099, 257, 1, false, false}, DType::bf16, DType::f32, {false, true, true}, seed += 10);
}

TEST(CudaMatmul, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Dev a = upload(randu(12, 1), {3, 4}), b = upload(randu(30, 2), {5, 6}), out = poisoned(DType::f32, {3, 6});
  EXPECT_GRPO_ERROR(gpu().matmul(out, a, b, {}, false, false), "matmul", "f32[3, 4]", "f32[5, 6]",
                    "inner dimensions 4 and 5 differ");
  Dev b46 = upload(randu(24, 3), {4, 6}), out_bad = poisoned(DType::f32, {3, 5}), bias_bad = upload(randu(5, 4), {5});
  EXPECT_GRPO_ERROR(gpu().matmul(out_bad, a, b46, {}, false, false), "matmul", "out", "f32[3, 5]", "[3, 6]");
  EXPECT_GRPO_ERROR(gpu().matmul(out, a, b46, bias_bad, false, false), "matmul", "bias", "f32[5]", "[6]");
  EXPECT_GRPO_ERROR(gpu().matmul(out, a, b46, {}, false, true), "matmul", "inner dimensions 4 and 6 differ");
  // dtypes: i32 a; b's dtype differs from a's; bf16 out from f32 inputs.
  Dev ai = cudatest::alloc_dev(DType::i32, {3, 4});
  EXPECT_GRPO_ERROR(gpu().matmul(out, ai, b46, {}, false, false), "matmul", "a", "i32[3, 4]", "f32 or bf16");
  Dev b46h = upload(randu(24, 3), {4, 6}, DType::bf16);
  EXPECT_GRPO_ERROR(gpu().matmul(out, a, b46h, {}, false, false), "matmul", "b", "bf16[4, 6]", "expected dtype f32");
  Dev out_h = poisoned(DType::bf16, {3, 6});
  EXPECT_GRPO_ERROR(gpu().matmul(out_h, a, b46, {}, false, false), "matmul", "out", "bf16[3, 6]", "f32");
  // A host tensor.
  std::vector<float> host_a = randu(12, 5);
  EXPECT_GRPO_ERROR(gpu().matmul(out, host_view(host_a, {3, 4}), b46, {}, false, false), "matmul", "a", "on cpu",
                    "expected cuda");
  // Batches, ranks, aliasing.
  Dev a3 = upload(randu(36, 6), {3, 3, 4}), b3 = upload(randu(48, 7), {2, 4, 6}), o3 = poisoned(DType::f32, {2, 3, 6});
  EXPECT_GRPO_ERROR(gpu().matmul(o3, a3, b3, {}, false, false), "matmul", "batch sizes 3 and 2 differ");
  EXPECT_GRPO_ERROR(gpu().matmul(out, a, b3, {}, false, false), "matmul", "both must be 2-D or both 3-D");
  Dev b44 = upload(randu(16, 8), {4, 4});
  EXPECT_GRPO_ERROR(gpu().matmul(a.t.view({3, 4}), a, b44, {}, false, false), "matmul", "overlaps");
  // Backward.
  Dev dout = upload(randu(18, 9), {3, 6}), da_bad = poisoned(DType::f32, {4, 3}), db = poisoned(DType::f32, {4, 6});
  Dev dout_bad = upload(randu(21, 10), {3, 7});
  EXPECT_GRPO_ERROR(gpu().matmul_backward(da_bad, db, {}, dout, a, b46, false, false), "matmul_backward", "da",
                    "f32[4, 3]", "f32[3, 4]");
  EXPECT_GRPO_ERROR(gpu().matmul_backward({}, db, {}, dout_bad, a, b46, false, false), "matmul_backward", "dout",
                    "f32[3, 7]", "[3, 6]");
  EXPECT_GRPO_ERROR(gpu().matmul_backward({}, db, bias_bad, dout, a, b46, false, false), "matmul_backward", "dbias",
                    "f32[5]");
  // bf16 activations: da must be bf16 (only db and dbias may widen to f32); dout must be bf16.
  Dev ah = upload(randu(12, 11), {3, 4}, DType::bf16), douth = upload(randu(18, 12), {3, 6}, DType::bf16);
  EXPECT_GRPO_ERROR(gpu().matmul_backward(poisoned(DType::f32, {3, 4}), {}, {}, douth, ah, b46h, false, false),
                    "matmul_backward", "da", "f32[3, 4]", "bf16[3, 4]");
  EXPECT_GRPO_ERROR(gpu().matmul_backward({}, db, {}, dout, ah, b46h, false, false), "matmul_backward", "dout",
                    "expected dtype bf16");
}

// ---- embedding -------------------------------------------------------------------------

void check_embedding(int64_t V, int64_t C, const std::vector<int32_t>& ids_h, DType table_dt, DType out_dt,
                     uint64_t seed) {
  const int64_t T = int64_t(ids_h.size());
  SCOPED_TRACE("V=" + std::to_string(V) + " C=" + std::to_string(C) + " T=" + std::to_string(T) + " " +
               dts(table_dt, out_dt));
  std::vector<int32_t> ids_v = ids_h;
  Dev ids = upload_i32(ids_v, {T});
  Pair table = input({V, C}, table_dt, seed);
  // Forward: a plain gather, exact whatever the dtypes (bf16 -> f32 widens exactly, f32 -> bf16
  // rounds as the host does).
  Pair out = assigned({T, C}, out_dt);
  cpu().embedding(out.host(), host_view(ids_v, {T}), table.host());
  gpu().embedding(out.dev(), ids, table.dev());
  std::vector<float> want = out.h;
  round_to(want, out_dt);
  EXPECT_EQ(download(out.dev()), want);
  // Backward: dtable accumulates from random values.
  Pair dout = input({T, C}, out_dt, seed + 1);
  Pair dtable = input({V, C}, table_dt, seed + 2);
  cpu().embedding_backward(dtable.host(), dout.host(), host_view(ids_v, {T}));
  gpu().embedding_backward(dtable.dev(), dout.dev(), ids);
  EXPECT_REL("dtable", download(dtable.dev()), dtable.h, tol_of({table_dt, out_dt}));
  if (table_dt == DType::f32) {
    // Same additions in the same (token) order as the CPU: bitwise equal.
    EXPECT_EQ(download(dtable.dev()), dtable.h);
  }
}

TEST(CudaEmbedding, ForwardAndBackwardWithRepeatedIds) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 6000;
  for (DType table_dt : {DType::f32, DType::bf16})
    for (DType out_dt : {DType::f32, DType::bf16}) {
      // Ids only in [0, 40): rows 40..49 receive nothing.
      seed += 10;
      check_embedding(50, 65, randint(1537, seed, 0, 39), table_dt, out_dt, seed + 1);
      check_embedding(7, 1, randint(33, seed + 2, 0, 6), table_dt, out_dt, seed + 3);
      check_embedding(1, 7, std::vector<int32_t>(7, 0), table_dt, out_dt, seed + 4);
      check_embedding(5, 0, randint(9, seed + 7, 0, 4), table_dt, out_dt, seed + 8);  // empty rows
      // Rows longer than one block's 256 columns; one hot id among many.
      std::vector<int32_t> hot = randint(2049, seed + 5, 0, 1000);
      for (size_t i = 0; i < hot.size(); i += 3) hot[i] = 257;
      check_embedding(1001, 600, hot, table_dt, out_dt, seed + 6);
    }
}

TEST(CudaEmbedding, RejectsOutOfRangeIdsAndBadArguments) {
  GRPO_REQUIRE_GPU();
  Pair table = input({9, 4}, DType::f32, 1);
  Dev out = poisoned(DType::f32, {3, 4});
  EXPECT_GRPO_ERROR(gpu().embedding(out, upload_i32({1, 2, 9}, {3}), table.dev()), "embedding", "ids[2] = 9",
                    "outside [0, 9)", "f32[9, 4]");
  EXPECT_GRPO_ERROR(gpu().embedding(out, upload_i32({-1, 2, 30}, {3}), table.dev()), "embedding", "ids[0] = -1",
                    "[0, 9)");
  // The backward checks too, and leaves dtable untouched.
  Pair dtable = input({9, 4}, DType::f32, 2);
  Dev dout = upload(randu(12, 3), {3, 4});
  EXPECT_GRPO_ERROR(gpu().embedding_backward(dtable.dev(), dout, upload_i32({0, 12, -3}, {3})), "embedding_backward",
                    "ids[1] = 12", "[0, 9)");
  EXPECT_EQ(download(dtable.dev()), dtable.h);
  // Shapes, dtypes, devices.
  Dev ids = upload_i32({0, 1, 2}, {3});
  EXPECT_GRPO_ERROR(gpu().embedding(poisoned(DType::f32, {3, 5}), ids, table.dev()), "embedding", "out",
                    "f32[3, 5]", "[3, 4]");
  EXPECT_GRPO_ERROR(gpu().embedding(out, upload(randu(3, 4), {3}), table.dev()), "embedding", "ids", "f32[3]",
                    "i32");
  EXPECT_GRPO_ERROR(gpu().embedding_backward(dtable.dev(), upload(randu(8, 5), {2, 4}), ids), "embedding_backward",
                    "dout", "f32[2, 4]", "[3, 4]");
  std::vector<float> host_table = table.h;
  EXPECT_GRPO_ERROR(gpu().embedding(out, ids, host_view(host_table, {9, 4})), "embedding", "table", "on cpu");
  EXPECT_GRPO_ERROR(gpu().embedding(out, ids, cudatest::alloc_dev(DType::i32, {9, 4})), "embedding", "table",
                    "f32 or bf16");
}

// ---- grouped matmul --------------------------------------------------------------------

std::vector<int32_t> offsets_of(const std::vector<int32_t>& counts) {
  std::vector<int32_t> o(counts.size() + 1, 0);
  for (size_t e = 0; e < counts.size(); ++e) o[e + 1] = o[e] + counts[e];
  return o;
}

// The case, for SCOPED_TRACE.
std::string grouped_case(const std::vector<int32_t>& counts, int64_t N, int64_t K, DType in, DType out_dt) {
  std::ostringstream what;
  what << "E=" << counts.size() << " R=" << offsets_of(counts).back() << " N=" << N << " K=" << K << " "
       << dts(in, out_dt) << " counts";
  for (size_t e = 0; e < counts.size() && e < 16; ++e) what << " " << counts[e];
  if (counts.size() > 16) what << " ...";
  return what.str();
}

// Forward only, out poisoned, against the CPU.
void check_grouped_forward(const std::vector<int32_t>& counts, int64_t N, int64_t K, DType in, DType out_dt,
                           uint64_t seed) {
  SCOPED_TRACE(grouped_case(counts, N, K, in, out_dt));
  std::vector<int32_t> o = offsets_of(counts);
  const int64_t E = int64_t(counts.size()), R = o.back();
  Dev offsets = upload_i32(o, {E + 1});
  Pair x = input({R, K}, in, seed), w = input({E, N, K}, in, seed + 1);
  Pair out = assigned({R, N}, out_dt);
  cpu().grouped_matmul(out.host(), x.host(), w.host(), host_view(o, {E + 1}));
  gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), offsets);
  EXPECT_REL("grouped out", download(out.dev()), out.h, tol_of({in, out_dt}));
}

// Forward, then the backward with both gradients, dx only and dw only. out_dt is the dtype of
// out and dw (f32 with bf16 inputs: the per-expert fallback).
void check_grouped(const std::vector<int32_t>& counts, int64_t N, int64_t K, DType in, DType out_dt, uint64_t seed) {
  check_grouped_forward(counts, N, K, in, out_dt, seed);
  SCOPED_TRACE(grouped_case(counts, N, K, in, out_dt));
  std::vector<int32_t> o = offsets_of(counts);
  const int64_t E = int64_t(counts.size()), R = o.back();
  Dev offsets = upload_i32(o, {E + 1});
  Pair x = input({R, K}, in, seed), w = input({E, N, K}, in, seed + 1);  // check_grouped_forward's values
  Pair dout = input({R, N}, in, seed + 2);
  for (auto [want_dx, want_dw] : {std::pair{true, true}, std::pair{true, false}, std::pair{false, true}}) {
    SCOPED_TRACE(std::string(want_dx ? " dx" : "") + (want_dw ? " dw" : ""));
    Pair dx = assigned({R, K}, in);
    Pair dw = input({E, N, K}, out_dt, seed + 3);  // accumulates; experts without rows keep it
    cpu().grouped_matmul_backward(want_dx ? dx.host() : Tensor{}, want_dw ? dw.host() : Tensor{}, dout.host(),
                                  x.host(), w.host(), host_view(o, {E + 1}));
    gpu().grouped_matmul_backward(want_dx ? dx.dev() : Tensor{}, want_dw ? dw.dev() : Tensor{}, dout.dev(), x.dev(),
                                  w.dev(), offsets);
    if (want_dx) {
      EXPECT_REL("grouped dx", download(dx.dev()), dx.h, tol_of({in}));
    }
    if (want_dw) {
      EXPECT_REL("grouped dw", download(dw.dev()), dw.h, tol_of({in, out_dt}));
    }
  }
}

TEST(CudaGroupedMatmul, EmptyExpertsAndOneExpertWithAllRows) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 7000;
  const std::vector<std::vector<int32_t>> count_sets = {
      {0, 7, 0, 1, 33, 0},               // empty first, middle and last experts
      {65},                              // one expert
      {0, 0, 129, 0},                    // one expert holds every row
      {0, 0, 0},                         // no rows at all
      {1, 257, 0, 7, 33, 129, 1, 0, 2},  // odd mixes
  };
  const int64_t sizes[][2] = {{7, 33}, {33, 7}, {129, 1}, {1, 129}, {257, 65}};
  for (auto [in, out] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::bf16},
                         std::pair{DType::bf16, DType::f32}})
    for (const auto& counts : count_sets)
      for (const auto& s : sizes) check_grouped(counts, s[0], s[1], in, out, seed += 10);
}

// f32 weight gradients of bf16 inputs (MoE training): one GEMM per expert (the default) and
// the grouped path (chunks of experts' rows converted to f32, one grouped GEMM per chunk), each
// against the CPU. Both multiply the same bf16 values with f32 accumulation, so dw is held to
// an f32 tolerance: 1e-5 per expert (measured 2.1e-6 on an H200), 1e-4 grouped (measured
// 1.05e-5 through cuBLAS's TF32 grouped GEMM; reductions of up to 9000 rows). 1000 + 1030 f32
// columns: 8264 rows fill a 64 MiB chunk, so the counts below make three chunks, the first an
// expert larger than a chunk on its own.
TEST(CudaGroupedMatmul, F32WeightGradientsOfBf16InputsGroupedAndPerExpert) {
  GRPO_REQUIRE_GPU();
  struct Restore {
    ~Restore() { cuda_set_expert_weight_grad(gpu(), ExpertWeightGrad::automatic); }
  } restore;
  const std::vector<int32_t> counts = {9000, 0, 3000, 5000, 1, 0, 2500, 700};
  const int64_t N = 1030, K = 1000;
  SCOPED_TRACE(grouped_case(counts, N, K, DType::bf16, DType::f32));
  std::vector<int32_t> o = offsets_of(counts);
  const int64_t E = int64_t(counts.size()), R = o.back();
  Dev offsets = upload_i32(o, {E + 1});
  Pair x = input({R, K}, DType::bf16, 8101), w = input({E, N, K}, DType::bf16, 8102);
  Pair dout = input({R, N}, DType::bf16, 8103);
  Pair dx = assigned({R, K}, DType::bf16), dw = input({E, N, K}, DType::f32, 8104);
  const std::vector<float> dw0 = dw.h;
  cpu().grouped_matmul_backward(dx.host(), dw.host(), dout.host(), x.host(), w.host(), host_view(o, {E + 1}));
  std::vector<float> got[2];
  const ExpertWeightGrad modes[2] = {ExpertWeightGrad::grouped, ExpertWeightGrad::per_expert};
  const double dw_tol[2] = {1e-4, 1e-5};
  for (int m = 0; m < 2; ++m) {
    cuda_set_expert_weight_grad(gpu(), modes[m]);
    Dev gdx = poisoned(DType::bf16, {R, K}), gdw = upload(dw0, {E, N, K}, DType::f32);
    gpu().grouped_matmul_backward(gdx.t, gdw.t, dout.dev(), x.dev(), w.dev(), offsets);
    const std::string path = cuda_expert_weight_grad_path(gpu());
    std::printf("[expert weight grad] %s: rel. L2 of dw %.3g\n", path.c_str(), rel_err(download(gdw), dw.h));
    if (m == 0) EXPECT_EQ(path.rfind("grouped", 0), 0u) << path;
    else EXPECT_EQ(path, "per expert");
    got[m] = download(gdw);
    EXPECT_REL("dw", got[m], dw.h, dw_tol[m]);
    EXPECT_REL("dx", download(gdx), dx.h, tol_of({DType::bf16}));
    // Experts without rows keep their old gradient exactly.
    for (int64_t e : {1, 5})
      for (int64_t i = 0; i < N * K; i += 97)
        ASSERT_EQ(got[m][size_t(e * N * K + i)], dw0[size_t(e * N * K + i)]) << "expert " << e;
  }
  EXPECT_REL("grouped vs per expert", got[0], got[1], 1e-4);
  // The default is one GEMM per expert.
  cuda_set_expert_weight_grad(gpu(), ExpertWeightGrad::automatic);
  {
    Dev adw = upload(dw0, {E, N, K}, DType::f32);
    gpu().grouped_matmul_backward(Tensor{}, adw.t, dout.dev(), x.dev(), w.dev(), offsets);
    EXPECT_EQ(cuda_expert_weight_grad_path(gpu()), "per expert");
    EXPECT_REL("automatic vs per expert", download(adw), got[1], 1e-6);
  }
  // dw only, no rows at all: nothing changes.
  cuda_set_expert_weight_grad(gpu(), ExpertWeightGrad::grouped);
  const std::vector<int32_t> none(size_t(E + 1), 0);
  Dev none_offsets = upload_i32(none, {E + 1});
  Dev gdw = upload(dw0, {E, N, K}, DType::f32);
  gpu().grouped_matmul_backward(Tensor{}, gdw.t, dout.dev().rows(0, 0), x.dev().rows(0, 0), w.dev(), none_offsets);
  EXPECT_EQ(download(gdw), dw0);
}

TEST(CudaGroupedMatmul, ManyExperts) {
  GRPO_REQUIRE_GPU();
  // 64 experts, a quarter of them empty, 2 to 300 rows each.
  std::vector<int32_t> counts = randint(64, 8000, 2, 300);
  for (size_t e = 0; e < counts.size(); e += 4) counts[e] = 0;
  check_grouped(counts, 96, 160, DType::bf16, DType::bf16, 8001);
  check_grouped(counts, 96, 160, DType::bf16, DType::f32, 8002);
  check_grouped(counts, 96, 160, DType::f32, DType::f32, 8003);
}

TEST(CudaGroupedMatmul, RejectsBadOffsetsAndArguments) {
  GRPO_REQUIRE_GPU();
  const int64_t E = 3, R = 5, N = 4, K = 6;
  Dev x = upload(randu(R * K, 1), {R, K}), w = upload(randu(E * N * K, 2), {E, N, K}), out = poisoned(DType::f32, {R, N});
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, w, upload_i32({1, 2, 3, 5}, {E + 1})), "grouped_matmul",
                    "expert_offsets[0] = 1");
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, w, upload_i32({0, 3, 2, 5}, {E + 1})), "grouped_matmul",
                    "decrease at expert 1");
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, w, upload_i32({0, 2, 3, 4}, {E + 1})), "grouped_matmul",
                    "expert_offsets[3] = 4", "expected 5", "f32[5, 6]");
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, w, upload_i32({0, 2, 3}, {E})), "grouped_matmul", "expert_offsets",
                    "i32[3]", "[4]");
  Dev good = upload_i32({0, 2, 2, 5}, {E + 1});
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, w, upload(randu(4, 3), {E + 1})), "grouped_matmul",
                    "expert_offsets", "f32[4]", "i32");
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, upload(randu(E * N * 7, 4), {E, N, 7}), good), "grouped_matmul",
                    "f32[5, 6]", "f32[3, 4, 7]", "inner dimensions 6 and 7 differ");
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(poisoned(DType::f32, {R, N + 1}), x, w, good), "grouped_matmul", "out",
                    "f32[5, 5]", "[5, 4]");
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, upload(randu(E * N * K, 4), {E, N, K}, DType::bf16), good),
                    "grouped_matmul", "w", "bf16[3, 4, 6]", "expected dtype f32");
  std::vector<int32_t> host_offsets = {0, 2, 2, 5};
  EXPECT_GRPO_ERROR(gpu().grouped_matmul(out, x, w, host_view(host_offsets, {E + 1})), "grouped_matmul",
                    "expert_offsets", "on cpu");
  Dev dout = upload(randu(R * N, 5), {R, N});
  EXPECT_GRPO_ERROR(gpu().grouped_matmul_backward({}, poisoned(DType::f32, {E + 1, N, K}), dout, x, w, good),
                    "grouped_matmul_backward", "dw", "f32[4, 4, 6]", "f32[3, 4, 6]");
  // Bad offsets leave dw untouched.
  Pair dw = input({E, N, K}, DType::f32, 6);
  EXPECT_GRPO_ERROR(gpu().grouped_matmul_backward({}, dw.dev(), dout, x, w, upload_i32({0, 2, 6, 5}, {E + 1})),
                    "grouped_matmul_backward", "expert_offsets");
  EXPECT_EQ(download(dw.dev()), dw.h);
}


// ---- grouped matmul: the device path (few rows, graphs) and the cuBLAS path ---------------

// R rows over E experts: experts 1, 4, 7, ... get none, the others share R at random cuts
// (some of them may get none too).
std::vector<int32_t> split_rows(int32_t R, int E, uint64_t seed) {
  std::vector<int> live;
  for (int e = 0; e < E; ++e)
    if (e % 3 != 1) live.push_back(e);
  std::vector<int32_t> cuts = randint(live.size() - 1, seed, 0, R);
  cuts.push_back(R);
  std::sort(cuts.begin(), cuts.end());
  std::vector<int32_t> counts(size_t(E), 0);
  int32_t prev = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    counts[size_t(live[i])] = cuts[i] - prev;
    prev = cuts[i];
  }
  return counts;
}

// Host floats into an existing device tensor of dtype f32 or bf16 (rounded as upload() does).
void write_dev(const Tensor& t, const std::vector<float>& h) {
  ASSERT_EQ(int64_t(h.size()), t.numel());
  if (t.dtype == DType::bf16) {
    std::vector<uint16_t> b(h.size());
    for (size_t i = 0; i < h.size(); ++i) b[i] = f32_to_bf16(h[i]);
    gpu().allocator().copy_from_host(t.data, b.data(), b.size() * 2);
  } else {
    ASSERT_EQ(t.dtype, DType::f32);
    gpu().allocator().copy_from_host(t.data, h.data(), h.size() * 4);
  }
}
void write_i32(const Tensor& t, const std::vector<int32_t>& h) {
  ASSERT_EQ(int64_t(h.size()), t.numel());
  gpu().allocator().copy_from_host(t.data, h.data(), h.size() * 4);
}
void poison(const Tensor& t) { write_dev(t, std::vector<float>(size_t(t.numel()), std::nanf(""))); }


// cuda::kDeviceGroupedMaxRows (kernels/cuda/cuda_ops_impl.h, not included by tests): at most
// this many rows take the device path outside a capture.
constexpr int32_t kDeviceMaxRows = 512;

constexpr std::pair<DType, DType> kGroupedDtypes[] = {
    {DType::f32, DType::f32}, {DType::bf16, DType::bf16}, {DType::bf16, DType::f32}};

TEST(CudaGroupedMatmul, DeviceAndCublasPathsAroundTheThreshold) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 9000;
  // K odd (scalar loads), a multiple of 4 only (vector loads for f32, scalar for bf16), and a
  // multiple of 8 (vector loads for both); N odd, over one and several column tiles.
  const int64_t sizes[][2] = {{1, 1}, {7, 33}, {129, 7}, {33, 129}, {7, 12}, {33, 64}, {129, 8}, {7, 256}};
  for (auto [in, out] : kGroupedDtypes)
    for (int32_t R : {kDeviceMaxRows - 1, kDeviceMaxRows, kDeviceMaxRows + 1, 3001})
      for (bool one_expert : {false, true}) {
        seed += 10;
        const std::vector<int32_t> counts = one_expert ? std::vector<int32_t>{0, R, 0, 0} : split_rows(R, 8, seed);
        for (const auto& s : sizes) check_grouped_forward(counts, s[0], s[1], in, out, seed += 3);
      }
}

TEST(CudaGroupedMatmul, DevicePathEmptySizesAndManyExperts) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 9500;
  for (auto [in, out] : kGroupedDtypes) {
    check_grouped_forward({0, 0, 0}, 7, 33, in, out, seed += 10);        // R == 0
    check_grouped_forward({2, 0, 3}, 0, 33, in, out, seed += 10);        // N == 0
    check_grouped_forward({2, 0, 3}, 7, 0, in, out, seed += 10);         // K == 0: zeros
    check_grouped_forward({0, 1}, 129, 64, in, out, seed += 10);         // one token
    check_grouped_forward({9, 0, 0, 17}, 33, 129, in, out, seed += 10);  // chunks of 8 and a rest
    // One expert holds every row (64 chunks of 8), rows longer than a warp's 16-byte pass.
    check_grouped_forward({0, 512, 0}, 33, 1024, in, out, seed += 10);
    check_grouped_forward({512}, 7, 1031, in, out, seed += 10);
    // 128 experts: 4 rows each (512: the device path), 0 to 3 rows each, 8 rows each (1024:
    // cuBLAS).
    check_grouped_forward(std::vector<int32_t>(128, 4), 96, 160, in, out, seed += 10);
    seed += 10;
    check_grouped_forward(randint(128, seed, 0, 3), 96, 129, in, out, seed + 1);
    check_grouped_forward(std::vector<int32_t>(128, 8), 96, 160, in, out, seed += 10);
  }
}

// x and w one element past a 16-byte boundary: K is a multiple of 8, but the loads must be
// scalar.
TEST(CudaGroupedMatmul, DevicePathMisalignedInputs) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 9800;
  const std::vector<int32_t> counts = {3, 0, 9, 1};
  std::vector<int32_t> o = offsets_of(counts);
  const int64_t E = 4, R = o.back(), N = 33, K = 64;
  Dev offsets = upload_i32(o, {E + 1});
  for (auto [in, out_dt] : kGroupedDtypes) {
    SCOPED_TRACE(grouped_case(counts, N, K, in, out_dt) + " misaligned");
    Pair x = input({R * K + 1}, in, seed += 10), w = input({E * N * K + 1}, in, seed += 10);
    const size_t es = dtype_size(in);
    const Shape xs = {R, K}, ws = {E, N, K};
    const Tensor xd(static_cast<char*>(x.d.t.data) + es, in, xs.data(), 2, Device::cuda);
    const Tensor wd(static_cast<char*>(w.d.t.data) + es, in, ws.data(), 3, Device::cuda);
    const Tensor xh(x.h.data() + 1, DType::f32, xs.data(), 2), wh(w.h.data() + 1, DType::f32, ws.data(), 3);
    Pair out = assigned({R, N}, out_dt);
    cpu().grouped_matmul(out.host(), xh, wh, host_view(o, {E + 1}));
    gpu().grouped_matmul(out.dev(), xd, wd, offsets);
    EXPECT_REL("grouped out", download(out.dev()), out.h, tol_of({in, out_dt}));
  }
}

// The offsets checks on both paths (R <= 512: on the device; above: on the host), the CPU's
// messages; offsets far outside [0, R] must not make the device kernels read or write out of
// bounds (a good call afterwards still works).
TEST(CudaGroupedMatmul, RejectsBadOffsetsOnBothPaths) {
  GRPO_REQUIRE_GPU();
  const int64_t E = 3, N = 4, K = 8;
  for (int32_t R : {5, kDeviceMaxRows, kDeviceMaxRows + 1, 600}) {
    SCOPED_TRACE("R=" + std::to_string(R));
    Pair x = input({R, K}, DType::f32, 1), w = input({E, N, K}, DType::f32, 2);
    Pair out = assigned({R, N}, DType::f32);
    const std::string rows = "f32[" + std::to_string(R) + ", 8]";
    const std::string last = "expert_offsets[3] = " + std::to_string(R - 1);
    const std::string expected = "expected " + std::to_string(R);
    EXPECT_GRPO_ERROR(gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({1, 2, 3, R}, {E + 1})),
                      "grouped_matmul", "expert_offsets[0] = 1, expected 0");
    EXPECT_GRPO_ERROR(gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({0, 3, 2, R}, {E + 1})),
                      "grouped_matmul", "expert_offsets decrease at expert 1 (3 then 2)");
    EXPECT_GRPO_ERROR(gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({0, 2, 3, R - 1}, {E + 1})),
                      "grouped_matmul", last.c_str(), expected.c_str(), rows.c_str());
    EXPECT_GRPO_ERROR(gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({0, -7, 2, R}, {E + 1})),
                      "grouped_matmul", "expert_offsets decrease at expert 0 (0 then -7)");
    EXPECT_GRPO_ERROR(gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({0, 2, 1000000, R}, {E + 1})),
                      "grouped_matmul", "expert_offsets decrease at expert 2 (1000000 then");
    EXPECT_GRPO_ERROR(
        gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({0, INT_MAX, INT_MAX, INT_MAX}, {E + 1})),
        "grouped_matmul", "expert_offsets[3] = 2147483647", expected.c_str());
    EXPECT_GRPO_ERROR(
        gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32({INT_MIN, INT_MIN, 0, R}, {E + 1})),
        "grouped_matmul", "expert_offsets[0] = -2147483648");
    // Still sound: the same tensors with good offsets.
    std::vector<int32_t> good = {0, 1, 1, R};
    poison(out.dev());
    cpu().grouped_matmul(out.host(), x.host(), w.host(), host_view(good, {E + 1}));
    gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), upload_i32(good, {E + 1}));
    EXPECT_REL("grouped out after errors", download(out.dev()), out.h, tol_of({DType::f32}));
  }
}

std::unique_ptr<OpsGraph> capture_grouped(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  gpu().begin_capture();
  try {
    gpu().grouped_matmul(out, x, w, offsets);
  } catch (...) {
    gpu().abort_capture();
    throw;
  }
  return gpu().end_capture();
}

// A graph of one grouped_matmul (the device path whatever R), replayed on new x and new
// offsets written into the captured buffers; bad offsets make the replay throw the CPU's
// message, and a later replay with good offsets works again.
TEST(CudaGroupedMatmul, GraphReplayReadsTheOffsetsOnTheDevice) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 9900;
  const int E = 6;
  const int64_t N = 33;
  for (auto [in, out_dt] : kGroupedDtypes)
    for (int32_t R : {24, 600}) {  // 600 > kDeviceMaxRows: eagerly cuBLAS, captured on the device path
      const int64_t K = R == 24 ? 64 : 33;
      const std::vector<int32_t> counts0 = split_rows(R, E, seed += 10);
      const std::vector<int32_t> counts1 = {R - 3, 0, 0, 1, 2, 0};
      SCOPED_TRACE(grouped_case(counts0, N, K, in, out_dt) + " -> graph");
      std::vector<int32_t> o = offsets_of(counts0);
      Dev offsets = upload_i32(o, {E + 1});
      Pair x = input({R, K}, in, seed + 1), w = input({E, N, K}, in, seed + 2);
      Pair out = assigned({R, N}, out_dt);
      // Eagerly first (the shapes' scratch exists before capturing).
      cpu().grouped_matmul(out.host(), x.host(), w.host(), host_view(o, {E + 1}));
      gpu().grouped_matmul(out.dev(), x.dev(), w.dev(), offsets);
      EXPECT_REL("eager out", download(out.dev()), out.h, tol_of({in, out_dt}));

      std::unique_ptr<OpsGraph> g;
      ASSERT_NO_THROW(g = capture_grouped(out.dev(), x.dev(), w.dev(), offsets));
      ASSERT_TRUE(g);
      ASSERT_FALSE(gpu().capturing());

      // New x, new counts, same buffers.
      x.h = randu(x.h.size(), seed + 3);
      round_to(x.h, in);
      write_dev(x.dev(), x.h);
      o = offsets_of(counts1);
      write_i32(offsets, o);
      poison(out.dev());
      g->replay();
      cpu().grouped_matmul(out.host(), x.host(), w.host(), host_view(o, {E + 1}));
      EXPECT_REL("replayed out", download(out.dev()), out.h, tol_of({in, out_dt}));

      // Bad offsets: the replay throws what the op throws when called directly.
      std::vector<int32_t> bad = o;
      std::swap(bad[1], bad[4]);  // 0, R - 3, R - 3, R - 3, R - 2, ...  ->  0, R - 2, R - 3, ...
      write_i32(offsets, bad);
      EXPECT_GRPO_ERROR(g->replay(), "grouped_matmul", "expert_offsets", "decrease at expert 1");
      bad = o;
      bad[size_t(E)] = R + 1;
      write_i32(offsets, bad);
      const std::string last = "expert_offsets[6] = " + std::to_string(R + 1) + ", expected " + std::to_string(R);
      EXPECT_GRPO_ERROR(g->replay(), "grouped_matmul", last.c_str());
      bad = o;
      bad[0] = 2;
      write_i32(offsets, bad);
      EXPECT_GRPO_ERROR(g->replay(), "grouped_matmul", "expert_offsets[0] = 2, expected 0");

      // Good offsets again: the graph's flags start clear on every replay.
      write_i32(offsets, o);
      poison(out.dev());
      g->replay();
      EXPECT_REL("replayed again", download(out.dev()), out.h, tol_of({in, out_dt}));
    }
}

}  // namespace
}  // namespace grpo
