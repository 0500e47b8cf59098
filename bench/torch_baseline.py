#!/usr/bin/env python3
"""PyTorch + Hugging Face transformers baseline for `grpo bench model`: the same model config
(random weights), timed in bf16 and in f32 (TF32 off), for one training step and for batched
greedy decoding. Prints JSON with tokens/s per phase.

    grpo bench model --arch qwen3_moe --preset gpu --dry-run --save-config /tmp/gpu_cfg
    python3 bench/torch_baseline.py --config /tmp/gpu_cfg            # sizes default to preset gpu's

What is timed (torch.cuda events on a GPU, perf_counter on the CPU; median of --repeats runs
after --warmup untimed ones):
  * train:   forward + backward of transformers' causal-LM loss (the mean next-token NLL, i.e.
             -1/T * the summed token log-probs: the objective `grpo bench model` times) on
             S = train_tokens / seq_len sequences of equal length seq_len. transformers has no
             varlen packing for every architecture, so this is a [S, seq_len] batch whose token
             count equals the packed T of our bench; attention is causal within each row just
             as ours is within each packed sequence. Gradients accumulate across runs (no
             zero_grad), as in our bench.
  * prefill: one forward of B prompts of prompt_len tokens with use_cache (DynamicCache),
             logits of the last position only (logits_to_keep=1).
  * decode:  new_tokens greedy steps of B sequences after that prefill (one token each per
             forward, argmax on the GPU), context prompt_len + 1 .. prompt_len + new_tokens.
Eager PyTorch: no torch.compile, no CUDA graphs; attention "sdpa" and transformers' default
MoE experts implementation unless --attn / --experts-impl say otherwise.

Runs offline (HF_HUB_OFFLINE): the config is read from disk and weights are random.
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.json or its folder (grpo bench model --save-config)")
    p.add_argument("--dtypes", nargs="+", default=["bf16", "f32"], choices=["bf16", "f32"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--train-tokens", type=int, default=8192, help="tokens of the training batch (our T)")
    p.add_argument("--seq-len", type=int, default=1024, help="length of each training sequence")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=32, help="greedy decode steps timed")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64], help="prefill/decode batch sizes")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, flash_attention_2, ...)")
    p.add_argument("--experts-impl", default=None, help="experts_implementation of MoE models (default: transformers')")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-decode", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the JSON here instead of stdout")
    return p.parse_args()


class Timer:
    """Seconds of fn(): CUDA events around it on a GPU (device time of the stream), wall clock on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def measure(timer, fn, repeats, warmup):
    for _ in range(warmup):
        timer(fn)
    s = sorted(timer(fn) for _ in range(repeats))
    return {"seconds": round(statistics.median(s), 7), "seconds_best": round(s[0], 7), "runs": len(s)}


def rate(tokens, t):
    t["tokens_per_s"] = round(tokens / t["seconds"], 1)
    return t


def load_config(path):
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else path
    return AutoConfig.from_pretrained(folder, local_files_only=True)


def build_model(config, dtype, device, attn, experts_impl):
    kwargs = {"attn_implementation": attn}
    if experts_impl:
        kwargs["experts_implementation"] = experts_impl
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)
        except TypeError:  # transformers releases that still call it torch_dtype
            model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype, **kwargs)
    return model.to(device=device, dtype=dtype)


def cache_keyword(model):
    """transformers 5.x renamed forward's past_key_values to cache (and its output field) in a
    minor release: use whichever this version takes."""
    import inspect
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(out):
    for key in ("cache", "past_key_values"):
        if out.get(key) is not None:
            return out[key]
    raise RuntimeError("the model returned no KV cache (use_cache=True)")


def peak_gib(device):
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_dtype(args, config, name, device, timer):
    dtype = torch.bfloat16 if name == "bf16" else torch.float32
    # f32 means f32: no TF32 in matmuls or convolutions (our model's f32 GEMMs do not use it).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(args.seed)
    model = build_model(config, dtype, device, args.attn, args.experts_impl)
    vocab = config.vocab_size
    res = {
        "dtype": name,
        "attn_implementation": getattr(model.config, "_attn_implementation", args.attn),
        "experts_implementation": getattr(model.config, "_experts_implementation", None),
    }
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)

    if not args.skip_train:
        S = args.train_tokens // args.seq_len
        ids = torch.randint(0, vocab, (S, args.seq_len), generator=gen).to(device)
        model.train()

        def step():
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()

        reset_peak(device)
        try:
            t = rate(S * args.seq_len, measure(timer, step, args.repeats, args.warmup))
            t.update({"batch": [S, args.seq_len], "peak_gib": peak_gib(device)})
        except torch.OutOfMemoryError as e:
            t = {"error": "out of memory: " + str(e).splitlines()[0], "batch": [S, args.seq_len]}
        res["train"] = t
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if not args.skip_decode:
        model.eval()
        prefill, decode = [], []
        for B in args.batches:
            prompt = torch.randint(0, vocab, (B, args.prompt_len), generator=gen).to(device)
            reset_peak(device)
            try:
                with torch.no_grad():
                    t = rate(B * args.prompt_len,
                             measure(timer, lambda: model(input_ids=prompt, use_cache=True, logits_to_keep=1),
                                     args.repeats, args.warmup))
                    t.update({"batch": B, "prompt_tokens": args.prompt_len})
                    prefill.append(t)

                    state = {}
                    kw = cache_keyword(model)

                    def start():  # untimed: prefill into a fresh cache, first greedy token
                        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
                        state["cache"] = output_cache(out)
                        state["next"] = out.logits[:, -1].argmax(-1, keepdim=True)

                    def steps():
                        cache, nxt = state["cache"], state["next"]
                        for _ in range(args.new_tokens):
                            out = model(input_ids=nxt, use_cache=True, **{kw: cache})
                            cache = output_cache(out)
                            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                        state["final"] = cache

                    times = []
                    for i in range(args.warmup + args.repeats):
                        start()
                        s = timer(steps)
                        if i >= args.warmup:
                            times.append(s)
                    times.sort()
                    d = {"seconds": round(statistics.median(times), 7), "seconds_best": round(times[0], 7),
                         "runs": len(times)}
                    d = rate(B * args.new_tokens, d)
                    d.update({"batch": B, "context": [args.prompt_len + 1, args.prompt_len + args.new_tokens],
                              "cache_length": state["final"].get_seq_length(), "peak_gib": peak_gib(device)})
                    decode.append(d)
                    state.clear()
            except torch.OutOfMemoryError as e:
                decode.append({"batch": B, "error": "out of memory: " + str(e).splitlines()[0]})
        res["prefill"], res["decode"] = prefill, decode
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def main():
    args = parse_args()
    if args.train_tokens % args.seq_len:
        sys.exit(f"--train-tokens {args.train_tokens} is not a multiple of --seq-len {args.seq_len}")
    device = torch.device(args.device)
    config = load_config(args.config)
    with torch.device("meta"):
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    doc = {
        "bench": "torch_baseline",
        "config": os.path.abspath(args.config),
        "model_type": config.model_type,
        "params": n_params,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "note": ("train: S = train_tokens / seq_len equal-length sequences ([S, seq_len], no packing), loss = "
                 "transformers' causal-LM mean NLL; decode: greedy, DynamicCache, eager PyTorch"),
        "runs": {},
    }
    timer = Timer(device)
    for name in args.dtypes:
        doc["runs"][name] = run_dtype(args, config, name, device, timer)
    text = json.dumps(doc, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
