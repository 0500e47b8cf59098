"""Checkpoints written by `grpo model init` load in Hugging Face transformers with no missing,
unexpected or mismatched tensors, for every supported architecture.

Usage: load_in_transformers.py GRPO_BINARY WORK_DIR
Exits 77 (ctest: skipped) when torch or transformers is not installed.
"""
import os
import subprocess
import sys

ARCHS = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "qwen2", "qwen3", "llama"]


def main() -> int:
    grpo, work = sys.argv[1], sys.argv[2]
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM
        from safetensors import safe_open
    except ImportError as e:
        print(f"SKIP: needs torch, transformers and safetensors from PyPI ({e})")
        return 77
    failures = []
    for arch in ARCHS:
        out = os.path.join(work, arch)
        subprocess.run([grpo, "model", "init", "--arch", arch, "--preset", "tiny", "--out", out, "--seed", "5"],
                       check=True, stdout=subprocess.DEVNULL)
        model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
            {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {})
        # Every tensor transformers holds must equal the file's value bit for bit.
        with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
            saved = {k: f.get_tensor(k) for k in f.keys()}
        state = model.state_dict()
        for name, value in saved.items():
            if name in state and not torch.equal(state[name], value):
                problems.setdefault("different_values", []).append(name)
        status = "ok" if not problems else f"FAIL {problems}"
        print(f"{arch}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} params: {status}")
        if problems:
            failures.append(arch)
    if failures:
        print("not loadable by transformers: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
