// Argument checks of the paged KV-cache ops (kv_cache_write, attention_paged), shared by the
// backends: each backend passes its device and the data dtypes it accepts, and gets the same
// messages. The shape checks need no data; the checks of slot ids, context lengths and block
// tables read index data, so a backend whose indices live on the host calls the *_data
// functions, and one whose indices live on a device runs the same tests in a kernel and words
// its error with the *_text fragments below.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/tensor.h"

namespace grpo::checks {

// The data dtypes a backend accepts; all data tensors of one call share one of them.
using DTypes = std::initializer_list<DType>;

// ---- kv_cache_write ----------------------------------------------------------------------

struct KvCacheWriteDims {
  int64_t T = 0;           // tokens written
  int64_t num_blocks = 0;  // of k_cache / v_cache [num_blocks, block_size, Hkv, D]
  int64_t block_size = 0;
  int64_t Hkv = 0;
  int64_t D = 0;
};

// k_cache, v_cache [num_blocks, block_size, Hkv, D], k, v [T, Hkv, D] of one dtype in
// `dtypes`, slot_mapping i32 [T], all on `dev`.
KvCacheWriteDims kv_cache_write_args(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v,
                                     const Tensor& slot_mapping, Device dev, DTypes dtypes);
// Every slot below num_blocks * block_size (negative slots are skipped, not errors).
void kv_cache_write_data(const Tensor& k_cache, const int32_t* slots, int64_t T);
// "outside the 6 slots of k_cache f32[3, 2, 2, 4] (3 blocks of 2)"
std::string kv_cache_slot_range_text(const Tensor& k_cache);

// ---- attention_paged ---------------------------------------------------------------------

struct PagedAttentionDims {
  int64_t T = 0;    // new tokens (rows of q)
  int64_t Hq = 0;   // query heads
  int64_t Hkv = 0;  // key/value heads; Hq % Hkv == 0
  int64_t D = 0;    // head dimension
  int64_t B = 0;    // sequences
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t max_blocks = 0;  // block_table entries per sequence
  int64_t group() const { return Hq / Hkv; }
};

// out, q [T, Hq, D] and k_cache, v_cache [num_blocks, block_size, Hkv, D] of one dtype in
// `dtypes`, cu_seqlens_q i32 [B + 1], seq_lens_k i32 [B], block_table i32 [B, max_blocks], all
// on `dev`. On the host the values of cu_seqlens_q are checked too (checks::cu_seqlens); a
// device backend checks them in a kernel and reports checks::cu_seqlens_rule.
PagedAttentionDims attention_paged_args(const Tensor& out, const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const Tensor& cu_seqlens_q, const Tensor& seq_lens_k,
                                        const Tensor& block_table, Device dev, DTypes dtypes);
// The other index data, host pointers (cu already checked): each sequence's context includes
// its new tokens; sequences with new tokens have enough block_table entries, each a block of
// k_cache. Returns the longest context that is read.
int64_t attention_paged_data(const PagedAttentionDims& d, const int32_t* cu, const int32_t* seq_lens_k,
                             const int32_t* table, const Tensor& k_cache, const Tensor& block_table);
// The same tests as they read when a device ran them (one text per failed test):
// "a sequence has more new tokens than its seq_lens_k (the context length must include them)"
std::string paged_context_text();
// "a sequence's seq_lens_k needs more blocks of 2 than block_table i32[2, 2] has per row"
std::string paged_table_width_text(const Tensor& k_cache, const Tensor& block_table);
// "a block_table entry covering the context is not a block of k_cache f32[4, 2, 2, 8] (0 to 3)"
std::string paged_block_id_text(const Tensor& k_cache);

}  // namespace grpo::checks
