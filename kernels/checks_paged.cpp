#include "kernels/checks_paged.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "kernels/checks_attention.h"
#include "kernels/op_checks.h"

namespace grpo::checks {
namespace {

std::string dtypes_str(DTypes dtypes) {
  std::ostringstream os;
  size_t i = 0;
  for (DType dt : dtypes) os << (i++ == 0 ? "" : i == dtypes.size() ? " or " : ", ") << dtype_name(dt);
  return os.str();
}

// A data tensor: defined, of a dtype in `dtypes`, on `dev`, with `ndim` dimensions. With one
// accepted dtype the message is tensor()'s.
void data_tensor(const char* op, const char* name, const Tensor& t, Device dev, int ndim, DTypes dtypes) {
  GRPO_CHECK(t.defined(), op << ": " << name << " is undefined");
  const bool ok = std::find(dtypes.begin(), dtypes.end(), t.dtype) != dtypes.end();
  GRPO_CHECK(ok, op << ": " << name << " is " << t.str() << ", expected dtype " << dtypes_str(dtypes));
  tensor(op, name, t, t.dtype, dev, ndim);
}

}  // namespace

// ---- kv_cache_write ----------------------------------------------------------------------

KvCacheWriteDims kv_cache_write_args(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v,
                                     const Tensor& slot_mapping, Device dev, DTypes dtypes) {
  const char* op = "kv_cache_write";
  data_tensor(op, "k_cache", k_cache, dev, 4, dtypes);
  same(op, "k_cache", k_cache, "v_cache", v_cache);
  KvCacheWriteDims d;
  d.num_blocks = k_cache.shape[0], d.block_size = k_cache.shape[1];
  d.Hkv = k_cache.shape[2], d.D = k_cache.shape[3];
  tensor(op, "k", k, k_cache.dtype, dev, 3);
  GRPO_CHECK(k.shape[1] == d.Hkv && k.shape[2] == d.D, op << ": k is " << k.str() << " but k_cache is "
                                                          << k_cache.str() << ": [Hkv, D] must match");
  same(op, "k", k, "v", v);
  d.T = k.shape[0];
  shape(op, "slot_mapping", slot_mapping, DType::i32, dev, {d.T});
  return d;
}

std::string kv_cache_slot_range_text(const Tensor& k_cache) {
  std::ostringstream os;
  os << "outside the " << k_cache.shape[0] * k_cache.shape[1] << " slots of k_cache " << k_cache.str() << " ("
     << k_cache.shape[0] << " blocks of " << k_cache.shape[1] << ")";
  return os.str();
}

void kv_cache_write_data(const Tensor& k_cache, const int32_t* slots, int64_t T) {
  const int64_t n_slots = k_cache.shape[0] * k_cache.shape[1];
  for (int64_t t = 0; t < T; ++t)
    GRPO_CHECK(slots[t] < n_slots, "kv_cache_write: token " << t << " has slot " << slots[t] << ", "
                                                            << kv_cache_slot_range_text(k_cache));
}

// ---- attention_paged ---------------------------------------------------------------------

PagedAttentionDims attention_paged_args(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const Tensor& cu_seqlens_q, const Tensor& seq_lens_k,
                                        const Tensor& block_table, Device dev, DTypes dtypes) {
  const char* op = "attention_paged";
  data_tensor(op, "k_cache", k_cache, dev, 4, dtypes);
  same(op, "k_cache", k_cache, "v_cache", v_cache);
  const AttentionDims heads = attention_heads(op, q, "k_cache", k_cache, k_cache.dtype, dev);
  PagedAttentionDims d;
  d.T = heads.T, d.Hq = heads.Hq, d.Hkv = heads.Hkv, d.D = heads.D;
  d.num_blocks = k_cache.shape[0], d.block_size = k_cache.shape[1];
  same(op, "q", q, "out", out);
  GRPO_CHECK(d.block_size >= 1, op << ": k_cache " << k_cache.str() << " has block size 0");
  d.B = cu_seqlens(op, "cu_seqlens_q", cu_seqlens_q, d.T, dev);  // on the host its values too
  shape(op, "seq_lens_k", seq_lens_k, DType::i32, dev, {d.B});
  tensor(op, "block_table", block_table, DType::i32, dev, 2);
  GRPO_CHECK(block_table.shape[0] == d.B, op << ": block_table is " << block_table.str() << " but cu_seqlens_q "
                                             << cu_seqlens_q.str() << " holds " << d.B << " sequences");
  d.max_blocks = block_table.shape[1];
  return d;
}

int64_t attention_paged_data(const PagedAttentionDims& d, const int32_t* cu, const int32_t* ctx, const int32_t* table,
                             const Tensor& k_cache, const Tensor& block_table) {
  const char* op = "attention_paged";
  int64_t max_ctx = 0;
  for (int64_t b = 0; b < d.B; ++b) {
    const int64_t n_new = cu[b + 1] - cu[b];
    GRPO_CHECK(ctx[b] >= n_new, op << ": sequence " << b << " has " << n_new << " new tokens but seq_lens_k[" << b
                                   << "] = " << ctx[b] << " (the context length must include them)");
    if (n_new == 0) continue;  // nothing is read for this sequence
    const int64_t needed = (ctx[b] + d.block_size - 1) / d.block_size;
    GRPO_CHECK(needed <= d.max_blocks, op << ": sequence " << b << " has " << ctx[b] << " tokens, needing "
                                          << needed << " blocks of " << d.block_size << ", but block_table "
                                          << block_table.str() << " has " << d.max_blocks << " per row");
    for (int64_t i = 0; i < needed; ++i) {
      const int32_t id = table[b * d.max_blocks + i];
      GRPO_CHECK(id >= 0 && id < d.num_blocks, op << ": block_table[" << b << ", " << i << "] = " << id
                                                  << " is not a block of k_cache " << k_cache.str() << " (0 to "
                                                  << d.num_blocks - 1 << ")");
    }
    max_ctx = std::max<int64_t>(max_ctx, ctx[b]);
  }
  return max_ctx;
}

std::string paged_context_text() {
  return "a sequence has more new tokens than its seq_lens_k (the context length must include them)";
}

std::string paged_table_width_text(const Tensor& k_cache, const Tensor& block_table) {
  std::ostringstream os;
  os << "a sequence's seq_lens_k needs more blocks of " << k_cache.shape[1] << " than block_table "
     << block_table.str() << " has per row";
  return os.str();
}

std::string paged_block_id_text(const Tensor& k_cache) {
  std::ostringstream os;
  os << "a block_table entry covering the context is not a block of k_cache " << k_cache.str() << " (0 to "
     << k_cache.shape[0] - 1 << ")";
  return os.str();
}

}  // namespace grpo::checks
