#!/usr/bin/env python3
"""Parity fixtures: tiny random models built by Hugging Face transformers itself, plus what
transformers computes for them (logits, next-token log-probs, the loss, gradients), in fp32.

The C++ test tests/policy/test_parity.cpp loads each tests/parity/fixtures/<arch>/ directory with
the grpo model code and compares. The fixtures are committed; CI never needs torch.

Run (CPU is enough, a few seconds; versions used for the committed files are in each
expected.safetensors' metadata):

    pip install torch transformers safetensors
    python3 tests/parity/make_fixtures.py            # rewrites tests/parity/fixtures/*
    python3 tests/parity/make_fixtures.py --check    # recompute, compare with committed files

Same torch/transformers versions -> byte-identical files (single thread, deterministic
algorithms, Python-side token ids). A different torch version may draw different random weights;
the files stay self-consistent either way.

Per fixture directory <arch>/:
  config.json, model.safetensors   written by save_pretrained (fp32). The checkpoint holds the
                                   legacy per-expert names, as Hub checkpoints do (see FACTS).
  expected.safetensors             (metadata: definitions below, versions)
    input_ids   I64 [N]    the sequences packed back to back, N = sum of lengths
    cu_seqlens  I64 [S+1]  sequence boundaries, e.g. [0, 7, 19, 24] for lengths 7, 12, 5
    targets     I64 [N]    targets[t] = input_ids[t+1] inside a sequence; -100 (HF ignore index)
                           at each sequence's last position, which predicts nothing
    loss_mask   F32 [N]    1 where targets != -100, else 0
    logits      F32 [N, V] each sequence run as its own forward (batch 1, positions 0..T-1, no
                           padding, no attention mask), rows packed like input_ids
    logprobs    F32 [N]    log_softmax(logits[t])[targets[t]]; 0 where loss_mask is 0
    loss_lm     F32 [1]    -(sum over the N-S predicted tokens of logprobs) / (N-S): one mean over
                           all predicted tokens of all sequences (token-weighted, not per sequence)
    aux_loss    F32 [1]    MoE only: transformers' load_balancing_loss_func over the router logits of
                           all MoE layers and all N tokens pooled (see FACTS), unscaled
    aux_coef    F32 [1]    router_aux_loss_coef (0 for dense models)
    loss        F32 [1]    loss_lm + aux_coef * aux_loss
    grad.<name> F32        dloss/d<name> for EVERY tensor in model.safetensors, under its saved name
                           (a tied lm_head is not saved; its gradient is inside the embedding's)
    router_logits.<l>  F32 [N, E]  MoE layer l's router logits (before softmax)
    routing.<l>        I64 [N, k]  experts chosen at layer l, in descending probability order
    routing_margin     F32 [1]     min over MoE layers and tokens of p_(k) - p_(k+1) (sorted router
                                   probabilities): how far the top-k choice is from a tie
  So dloss/dlogprobs[t] = -loss_mask[t] / (N - S) and dloss/daux_loss = aux_coef.

FACTS about transformers 5.24 semantics the grpo model must match (read from its modeling and
configuration files and checked by this script where marked [checked]):

config.json
 * save_pretrained writes RoPE as "rope_parameters": {"rope_type": ..., "rope_theta": ..., <scaling
   keys>}, not the legacy top-level "rope_theta" + "rope_scaling" that Hub checkpoints carry. Both
   forms must be read. The llama, qwen2_moe and olmoe fixtures are rewritten here into the legacy
   (Hub) form; transformers reloads them to the same rope_parameters and bit-identical logits
   [checked]. The others keep the transformers 5 form.
 * "head_dim": null is written for mixtral (head_dim = hidden_size / num_attention_heads then).
   qwen3 and qwen3_moe honour an explicit head_dim that differs from hidden/heads (here 12 and 16).
 * "dtype": "float32" (was "torch_dtype"); "pad_token_id": null. Unknown keys are ignored by HF.
 * tie_word_embeddings true: lm_head.weight is absent from model.safetensors and the LM head uses
   model.embed_tokens.weight; its gradient is the sum of the embedding-lookup and LM-head parts.

Weight names on disk (legacy, per expert) vs transformers 5 memory (fused) [checked bit-exact]:
 * qwen3_moe, qwen2_moe, olmoe: model.layers.L.mlp.experts.J.{gate,up,down}_proj.weight with shapes
   [F, H], [F, H], [H, F]; router model.layers.L.mlp.gate.weight [E, H]. In memory
   experts.gate_up_proj[J] = cat(gate_proj, up_proj) along dim 0, experts.down_proj[J] = down_proj.
 * mixtral: model.layers.L.block_sparse_moe.experts.J.w1.weight = gate_proj [F, H],
   w3 = up_proj [F, H], w2 = down_proj [H, F]; router model.layers.L.block_sparse_moe.gate.weight.
 * qwen2_moe shared expert: model.layers.L.mlp.shared_expert.{gate,up,down}_proj.weight (size
   shared_expert_intermediate_size) and model.layers.L.mlp.shared_expert_gate.weight [1, H].
 * qwen2 and qwen2_moe have q/k/v biases (qwen2 always; qwen2_moe when qkv_bias, default true);
   o_proj has none. qwen3/qwen3_moe/llama/mixtral/olmoe: no biases (attention_bias default false).

Layer structure (all pre-norm: h += attn(rmsnorm(h)); h += mlp(rmsnorm(h)); logits = lm_head(norm(h)))
 * RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, computed in fp32; eps = rms_norm_eps (also for q/k
   norms). Weight multiplies directly (no 1 + w offset).
 * qwen3/qwen3_moe: q_norm and k_norm are RMSNorms over head_dim, applied per head to q_proj/k_proj
   output BEFORE RoPE. olmoe: q_norm is an RMSNorm over the whole q_proj output (size heads*head_dim)
   and k_norm over the whole k_proj output (size (hidden/heads)*kv_heads), also before RoPE; olmoe's
   clip_qkv (null here) would clamp q, k, v after the norms.
 * RoPE is the "rotate_half" (non-interleaved) form: dims [0, d/2) pair with [d/2, d); cos/sin from
   inv_freq[i] = 1 / theta^(2i/d), d = head_dim; attention_scaling (1 for default and llama3)
   multiplies cos and sin. llama3 scaling: wavelen = 2*pi/inv_freq; wavelen < orig/high_freq_factor
   kept; wavelen > orig/low_freq_factor divided by factor; between, smoothed with
   s = (orig/wavelen - low)/(high - low), inv = (1-s)*inv/factor + s*inv. The llama fixture has
   inv_freq in all three bands (printed when this script runs).
 * Attention: softmax(q k^T * head_dim^-0.5 + causal mask) v, GQA head h uses kv head
   h / (heads/kv_heads); softmax in fp32.
 * MLP / each expert: down(silu(gate(x)) * up(x)).
 * MoE layer placement (qwen2_moe, qwen3_moe): layer i is MoE iff i not in mlp_only_layers and
   num_experts > 0 and (i + 1) % decoder_sparse_step == 0; otherwise a dense MLP of size
   intermediate_size. Experts use moe_intermediate_size (qwen*_moe) or intermediate_size (mixtral,
   olmoe). The qwen2_moe fixture has 3 layers with mlp_only_layers [1]: MoE, dense, MoE.
 * Router: logits = x W_gate^T (no bias); p = softmax(logits) in fp32; top-k of p (descending);
   weights = the top-k p, renormalised to sum 1 iff norm_topk_prob. norm_topk_prob defaults:
   qwen3_moe false (config class default; Qwen3-30B-A3B's config.json sets true), qwen2_moe false,
   olmoe false; mixtral has no such key and ALWAYS renormalises. Fixtures: qwen3_moe true,
   qwen2_moe false, olmoe false, mixtral (always). Gradients flow through the weights (softmax and
   the renormalisation), never through the top-k choice.
 * MoE output = sum_k weight_k * expert_k(x). qwen2_moe adds sigmoid(x . shared_expert_gate) *
   shared_expert(x), where x is the same post_attention_layernorm output the router sees; the
   sigmoid gate is a per-token scalar [1, H] weight, no bias, not normalised with the routed
   weights. mixtral's router_jitter_noise (0 here, training only) would scale the input.
 * Aux loss (load_balancing_loss_func, Switch style), with L_moe MoE layers and T tokens, no padding:
   over all L_moe*T rows (every MoE layer's router logits pooled, NOT a per-layer sum or mean):
   f_e = (number of top-k selections of expert e, counting each of the k slots) / (L_moe*T),
   P_e = (sum of softmax probabilities of e, full softmax, before top-k/renorm) / (L_moe*T),
   aux = num_experts * sum_e f_e * P_e. The top-k here is recomputed from the raw softmax (same
   selection as the router). f_e is a constant (no gradient); only P_e carries gradient. Dense layers
   contribute nothing. HF adds router_aux_loss_coef * aux to the LM loss only when
   output_router_logits is true (set true in these configs) and labels are given. With padding HF
   weights rows by the attention mask; the fixtures have no padding. For a batch of several
   sequences HF pools all rows of the batch; here all three sequences are pooled (N rows).
 * HF's labels loss is the per-forward token mean of cross-entropy over shifted labels; this script
   checks that its own log-probs reproduce it per sequence [checked].
 * nn.Embedding with padding_idx (pad_token_id) gets no gradient for that row in HF; all fixtures set
   pad_token_id null so this never applies (OLMoE's Hub config has pad_token_id 1).
"""

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

VOCAB = 128
SEQ_LENGTHS = (7, 12, 5)
INIT_STD = 0.1

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=2,
    max_position_embeddings=4096,
    initializer_range=INIT_STD,
    pad_token_id=None,
    bos_token_id=None,
    eos_token_id=None,
)
MOE = dict(num_experts_per_tok=2, output_router_logits=True, router_aux_loss_coef=0.01)

# Each architecture: model_type, config overrides, whether config.json is rewritten to the legacy
# Hub form (rope_theta + rope_scaling).
ARCHS = {
    "qwen3_moe": dict(
        model_type="qwen3_moe",
        config=dict(**MOE, num_experts=4, moe_intermediate_size=16, intermediate_size=48, head_dim=16,
                    norm_topk_prob=True, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False),
        legacy_config=False),
    "qwen2_moe": dict(
        model_type="qwen2_moe",
        config=dict(**MOE, num_experts=4, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                    intermediate_size=48, num_hidden_layers=3, decoder_sparse_step=1, mlp_only_layers=[1],
                    norm_topk_prob=False, qkv_bias=True, rms_norm_eps=1e-6, rope_theta=1e6,
                    tie_word_embeddings=False),
        legacy_config=True),
    "mixtral": dict(
        model_type="mixtral",
        config=dict(**MOE, num_local_experts=4, intermediate_size=16, rms_norm_eps=1e-5, rope_theta=1e6,
                    tie_word_embeddings=False),
        legacy_config=False),
    "olmoe": dict(
        model_type="olmoe",
        config=dict(**MOE, num_experts=4, intermediate_size=16, norm_topk_prob=False, clip_qkv=None,
                    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False),
        legacy_config=True),
    "qwen2": dict(
        model_type="qwen2",
        config=dict(intermediate_size=48, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False),
        legacy_config=False),
    "qwen3": dict(
        model_type="qwen3",
        config=dict(intermediate_size=48, head_dim=12, rms_norm_eps=1e-6, rope_theta=1e6,
                    tie_word_embeddings=True),
        legacy_config=False),
    "llama": dict(
        model_type="llama",
        config=dict(intermediate_size=48, rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=500000.0,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 512}),
        legacy_config=True),
}

# Routing closer to a tie than this would make the fixture fragile (a different summation order
# could pick another expert); the script refuses such a draw.
MIN_ROUTING_MARGIN = 1e-3

EXPERT_RE = re.compile(r"^model\.layers\.(\d+)\.(mlp|block_sparse_moe)\.experts\.(\d+)\."
                       r"(gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$")
MIXTRAL_GATE_RE = re.compile(r"^model\.layers\.(\d+)\.block_sparse_moe\.gate\.weight$")


def arch_seed(name):
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def token_ids(name):
    """Fixed token ids per architecture, drawn in Python (independent of torch's RNG)."""
    rng = random.Random(arch_seed(name) ^ 0x5EED)
    seqs = [[rng.randrange(VOCAB) for _ in range(n)] for n in SEQ_LENGTHS]
    seqs[1][9] = seqs[1][2]  # a repeated token inside a sequence (embedding gradient accumulates)
    seqs[2][0] = seqs[0][3]  # and one shared across sequences
    return seqs


def build_model(name, spec):
    cfg_kw = dict(COMMON)
    cfg_kw.update(spec["config"])
    config = AutoConfig.for_model(spec["model_type"], **cfg_kw)
    torch.manual_seed(arch_seed(name))
    kw = dict(attn_implementation="eager")
    if "output_router_logits" in cfg_kw:
        kw["experts_implementation"] = "eager"
    model = AutoModelForCausalLM.from_config(config, **kw)
    model.eval()
    # HF init leaves norm weights at 1 and biases at 0, which would leave them untested in the
    # forward: perturb them (own generator, deterministic).
    g = torch.Generator().manual_seed(arch_seed(name) + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def to_legacy_config(path):
    """Rewrite config.json's rope_parameters into Hub-style rope_theta + rope_scaling."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp["rope_theta"]
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {k: v for k, v in sorted(rp.items()) if k != "rope_theta"}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def saved_to_memory(model, saved_name, intermediate):
    """The in-memory tensor (a view) that the saved legacy-name tensor corresponds to."""
    params = dict(model.named_parameters())
    m = EXPERT_RE.match(saved_name)
    if m:
        layer, _, j, proj = m.groups()
        j = int(j)
        prefix = f"model.layers.{layer}.mlp.experts."
        if proj in ("gate_proj", "w1"):
            return params[prefix + "gate_up_proj"], (j, slice(0, intermediate))
        if proj in ("up_proj", "w3"):
            return params[prefix + "gate_up_proj"], (j, slice(intermediate, 2 * intermediate))
        return params[prefix + "down_proj"], (j,)
    m = MIXTRAL_GATE_RE.match(saved_name)
    if m:
        return params[f"model.layers.{m.group(1)}.mlp.gate.weight"], ()
    return params[saved_name], ()


def expert_intermediate(config):
    if hasattr(config, "moe_intermediate_size") and config.model_type in ("qwen2_moe", "qwen3_moe"):
        return config.moe_intermediate_size
    return config.intermediate_size


def moe_module(model):
    return sys.modules[type(model).__module__]


def compute(model, seqs):
    """Forward each sequence alone, pool, backward. Returns a dict of tensors and checks."""
    config = model.config
    is_moe = getattr(config, "output_router_logits", False)
    model.zero_grad(set_to_none=True)
    all_logits, all_lp, router = [], [], None
    hf_lm_losses = []
    for ids in seqs:
        x = torch.tensor([ids], dtype=torch.long)
        out = model(input_ids=x, labels=x, output_router_logits=is_moe)
        logits = out.logits[0]
        lp = torch.log_softmax(logits, dim=-1)[:-1].gather(1, x[0, 1:, None])[:, 0]
        all_logits.append(logits)
        all_lp.append(lp)
        hf_lm = out.loss - (config.router_aux_loss_coef * out.aux_loss if is_moe else 0.0)
        hf_lm_losses.append((hf_lm.detach(), -lp.detach().mean()))
        if is_moe:
            rl = [t.reshape(len(ids), -1) for t in out.router_logits]  # one [T, E] per MoE layer
            router = rl if router is None else [torch.cat([a, b], 0) for a, b in zip(router, rl)]
    n_pred = sum(len(s) - 1 for s in seqs)
    loss_lm = -torch.cat(all_lp).sum() / n_pred
    if is_moe:
        aux = moe_module(model).load_balancing_loss_func(
            tuple(router), config.num_local_experts if config.model_type == "mixtral" else config.num_experts,
            config.num_experts_per_tok, None)
        coef = config.router_aux_loss_coef
        loss = loss_lm + coef * aux
    else:
        aux = torch.zeros(())
        coef = 0.0
        loss = loss_lm
    loss.backward()
    return dict(logits=torch.cat(all_logits).detach(), lp=all_lp, loss_lm=loss_lm.detach(),
                aux=aux.detach(), coef=coef, loss=loss.detach(), router=router, hf_lm=hf_lm_losses)


def sort_metadata(path):
    """safetensors writes __metadata__ in hash order (differs per process): rewrite it sorted, in
    place, so that the file is byte-for-byte reproducible. Tensor entries keep their order."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        new = json.dumps(header, separators=(",", ":")).encode()
        assert len(new) <= n and len(raw.rstrip(b" ")) == len(new), "unexpected safetensors header layout"
        f.seek(8)
        f.write(new + b" " * (n - len(new)))


def llama3_bands(config):
    rp = config.rope_parameters
    if rp.get("rope_type") != "llama3":
        return None
    d = config.head_dim
    inv = [1.0 / rp["rope_theta"] ** (2 * i / d) for i in range(d // 2)]
    orig = rp["original_max_position_embeddings"]
    lo_w, hi_w = orig / rp["low_freq_factor"], orig / rp["high_freq_factor"]
    bands = []
    for f in inv:
        w = 2 * math.pi / f
        bands.append("kept" if w < hi_w else "scaled" if w > lo_w else "smoothed")
    return bands


def make_one(name, spec, outdir):
    model = build_model(name, spec)
    config = model.config
    seqs = token_ids(name)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        os.remove(os.path.join(outdir, f))
    model.save_pretrained(outdir)
    for f in sorted(os.listdir(outdir)):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(outdir, f))  # e.g. generation_config.json: not needed
    if spec["legacy_config"]:
        to_legacy_config(os.path.join(outdir, "config.json"))

    r = compute(model, seqs)
    is_moe = r["router"] is not None

    # The checkpoint on disk vs the model in memory: every saved tensor is bit-identical to its
    # in-memory counterpart, and the saved tensors cover every parameter element.
    inter = expert_intermediate(config) if is_moe else None
    grads = {}
    covered = 0
    with safe_open(os.path.join(outdir, "model.safetensors"), "pt") as f:
        saved_names = sorted(f.keys())
        for sname in saved_names:
            t = f.get_tensor(sname)
            p, idx = saved_to_memory(model, sname, inter)
            assert t.dtype == torch.float32, sname
            assert torch.equal(t, p.detach()[idx]), f"{name}: saved {sname} != memory"
            grads["grad." + sname] = p.grad[idx].detach().clone().contiguous()
            covered += t.numel()
    tied = config.tie_word_embeddings
    total = sum(p.numel() for p in model.parameters())  # tied parameters counted once
    assert covered == total, f"{name}: saved {covered} elements, model has {total}"
    assert ("lm_head.weight" in saved_names) != tied

    # Our log-probs reproduce HF's own labels loss for each sequence.
    for hf, ours in r["hf_lm"]:
        assert torch.allclose(hf, ours, rtol=1e-6, atol=1e-6), (name, hf.item(), ours.item())

    # Reload through transformers (legacy config and legacy expert names included): same config
    # semantics, bit-identical logits.
    kw = dict(attn_implementation="eager")
    if is_moe:
        kw["experts_implementation"] = "eager"
    reloaded = AutoModelForCausalLM.from_pretrained(outdir, **kw).eval()
    assert reloaded.config.rope_parameters == config.rope_parameters, (
        name, reloaded.config.rope_parameters, config.rope_parameters)
    with torch.no_grad():
        for i, ids in enumerate(seqs):
            a = reloaded(input_ids=torch.tensor([ids])).logits[0]
            lo = sum(SEQ_LENGTHS[:i])
            assert torch.equal(a, r["logits"][lo:lo + len(ids)]), f"{name}: reload changes logits"

    n = sum(SEQ_LENGTHS)
    input_ids = torch.tensor([t for s in seqs for t in s], dtype=torch.int64)
    cu = torch.tensor([0] + [sum(SEQ_LENGTHS[:i + 1]) for i in range(len(SEQ_LENGTHS))], dtype=torch.int64)
    targets = torch.full((n,), -100, dtype=torch.int64)
    logprobs = torch.zeros(n)
    mask = torch.zeros(n)
    for i, s in enumerate(seqs):
        lo = int(cu[i])
        targets[lo:lo + len(s) - 1] = torch.tensor(s[1:])
        logprobs[lo:lo + len(s) - 1] = r["lp"][i].detach()
        mask[lo:lo + len(s) - 1] = 1.0
    out = {
        "input_ids": input_ids, "cu_seqlens": cu, "targets": targets, "loss_mask": mask,
        "logits": r["logits"].contiguous(), "logprobs": logprobs,
        "loss_lm": r["loss_lm"].reshape(1).clone(), "aux_loss": r["aux"].reshape(1).float().clone(),
        "aux_coef": torch.tensor([r["coef"]], dtype=torch.float32), "loss": r["loss"].reshape(1).clone(),
    }
    margin = None
    if is_moe:
        k = config.num_experts_per_tok
        moe_layers = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]
        assert len(moe_layers) == len(r["router"])
        margin = float("inf")
        for li, rl in zip(moe_layers, r["router"]):
            rl = rl.detach()
            p = torch.softmax(rl, dim=-1)
            top = torch.topk(p, k + 1, dim=-1)
            margin = min(margin, float((top.values[:, k - 1] - top.values[:, k]).min()))
            out[f"router_logits.{li}"] = rl.contiguous()
            out[f"routing.{li}"] = top.indices[:, :k].to(torch.int64).contiguous()
        assert margin >= MIN_ROUTING_MARGIN, f"{name}: routing margin {margin} too close to a tie"
        out["routing_margin"] = torch.tensor([margin], dtype=torch.float32)
    out.update(grads)
    meta = {
        "arch": name,
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "seq_lengths": ",".join(str(x) for x in SEQ_LENGTHS),
        "definitions": "see tests/parity/make_fixtures.py docstring",
        "moe_layers": ",".join(str(i) for i, layer in enumerate(model.model.layers)
                               if hasattr(layer.mlp, "gate")),
        "config_form": "legacy rope_theta/rope_scaling" if spec["legacy_config"] else "rope_parameters",
    }
    save_file(out, os.path.join(outdir, "expected.safetensors"), metadata=meta)
    sort_metadata(os.path.join(outdir, "expected.safetensors"))

    size = sum(os.path.getsize(os.path.join(outdir, f)) for f in os.listdir(outdir))
    lp = logprobs[mask > 0]
    summary = (f"{name:10s} params={total:6d} size={size / 1024:6.1f}kB loss={r['loss'].item():.6f} "
               f"lm={r['loss_lm'].item():.6f} aux={r['aux'].item():.6f} "
               f"logprob[min,max]=[{lp.min().item():.3f},{lp.max().item():.3f}] "
               f"logit_std={r['logits'].std().item():.3f}")
    if margin is not None:
        summary += f" routing_margin={margin:.4f}"
    bands = llama3_bands(config)
    if bands:
        summary += f" llama3_bands={bands}"
    return summary, size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and compare bytes with the committed fixtures")
    ap.add_argument("--arch", action="append", choices=sorted(ARCHS), help="only these (repeatable)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    root = tempfile.mkdtemp(prefix="grpo-parity-") if args.check else FIXTURES
    total = 0
    failed = []
    try:
        for name in args.arch or ARCHS:
            summary, size = make_one(name, ARCHS[name], os.path.join(root, name))
            total += size
            print(summary)
            if args.check:
                for f in ("config.json", "model.safetensors", "expected.safetensors"):
                    with open(os.path.join(root, name, f), "rb") as a, open(os.path.join(FIXTURES, name, f), "rb") as b:
                        if a.read() != b.read():
                            failed.append(f"{name}/{f}")
    finally:
        if args.check:
            shutil.rmtree(root)
    print(f"total {total / 1024:.1f} kB")
    if failed:
        print("differs from the committed fixtures: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
