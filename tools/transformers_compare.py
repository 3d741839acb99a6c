#!/usr/bin/env python3
"""Our CUDA backend against Hugging Face transformers on one checkpoint, in one run.

Runs on the GPU machine (torch + transformers there). Steps:
  1. random token ids (seeded) -> ids.i32;
  2. our logits through the CUDA backend with src/cuda/cuda_probe: `steps` (one token
     per call: the decode kernels) and `prefill` (one call: the GEMM kernels);
  3. transformers GptOssForCausalLM in float32 (eager attention, MXFP4 dequantized) on
     the GPU: logits of one forward over the same ids; max |ours - ref|, and argmax
     agreement at every position whose reference top-2 margin exceeds --margin;
  4. the same model cast to bfloat16 ("as users run it" without MXFP4 kernels):
     prefill tok/s over --prompt tokens, decode tok/s over --gen cached steps.
Writes one JSON object (stdout and --json).

usage: transformers_compare.py --model DIR --probe PATH [--n 200] [--prompt 512]
                               [--gen 128] [--json FILE] [--skip-speed] [--work DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def run_probe(probe, model, mode, ids_path, out_path, n, vocab):
    t0 = time.time()
    subprocess.run([probe, model, mode, ids_path, out_path], check=True)
    logits = np.fromfile(out_path, dtype="<f4").reshape(n, vocab)
    print(f"  probe {mode}: {time.time() - t0:.1f} s", flush=True)
    return logits


def compare(ours, ref, margin):
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    top2 = np.sort(ref, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    sure = margins > margin
    agree = (ours.argmax(axis=1) == ref.argmax(axis=1))
    per_pos = diff.max(axis=1)
    return {
        "max_abs_diff": float(diff.max()),
        "per_position_max_first16": [round(float(v), 5) for v in per_pos[:16]],
        "positions_within_0.05": int((per_pos <= 0.05).sum()),
        "positions_over_0.05": {int(i): round(float(per_pos[i]), 4) for i in np.nonzero(per_pos > 0.05)[0][:20]},
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff_per_pos_median": float(np.median(diff.max(axis=1))),
        "ref_abs_max": float(np.abs(ref).max()),
        "positions": int(ref.shape[0]),
        "positions_margin_over": int(sure.sum()),
        "argmax_agree_where_margin": int((agree & sure).sum()),
        "argmax_agree_all": int(agree.sum()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--margin", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", default=None)
    ap.add_argument("--work", default="/tmp/tfcmp")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--gptoss", default=None, help="gptoss CLI: also the CPU backend's logits")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    vocab = cfg["vocab_size"]
    rng = np.random.default_rng(a.seed)
    ids = rng.integers(0, min(vocab, 199998), size=a.n).astype("<i4")
    ids_path = os.path.join(a.work, "ids.i32")
    ids.tofile(ids_path)
    result = {"model": a.model, "n": a.n, "margin": a.margin}

    print("ours (CUDA backend):", flush=True)
    ours_steps = run_probe(a.probe, a.model, "steps", ids_path, os.path.join(a.work, "steps.f32"), a.n, vocab)
    ours_pre = run_probe(a.probe, a.model, "prefill", ids_path, os.path.join(a.work, "prefill.f32"), a.n, vocab)

    ours_cpu = None
    if a.gptoss:
        t0 = time.time()
        cpu_path = os.path.join(a.work, "cpu.f32")
        r = subprocess.run([a.gptoss, "logits", "-m", a.model, "--device", "cpu", "--ids",
                            ",".join(str(int(i)) for i in ids), "--out", cpu_path])
        if r.returncode == 0:
            ours_cpu = np.fromfile(cpu_path, dtype="<f4").reshape(a.n, vocab)
            print(f"  CPU backend logits: {time.time() - t0:.1f} s", flush=True)
            result["gpu_decode_vs_cpu"] = compare(ours_steps, ours_cpu, a.margin)
            result["gpu_prefill_vs_cpu"] = compare(ours_pre, ours_cpu, a.margin)

    import torch
    import transformers
    from transformers import GptOssForCausalLM
    kw = {"attn_implementation": "eager"}
    try:
        from transformers import Mxfp4Config
        kw["quantization_config"] = Mxfp4Config(dequantize=True)
    except ImportError:
        pass
    t0 = time.time()
    try:
        model = GptOssForCausalLM.from_pretrained(a.model, dtype=torch.float32, device_map="cuda", **kw)
    except TypeError:
        model = GptOssForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, device_map="cuda", **kw)
    model = model.float().eval()
    result["transformers"] = transformers.__version__
    result["torch"] = torch.__version__
    result["transformers_load_s"] = time.time() - t0
    print(f"transformers {transformers.__version__} loaded in {time.time() - t0:.1f} s", flush=True)
    # router inputs of every layer, to measure how close each top-k choice is
    # to a tie (gap between the k-th and (k+1)-th logit, in float64)
    router_in = []
    hooks = []
    try:
        for layer in model.model.layers:
            router = layer.mlp.router
            hooks.append(router.register_forward_pre_hook(
                lambda mod, args: router_in.append((mod, args[0].detach().reshape(-1, args[0].shape[-1])))))
    except AttributeError as e:
        print(f"  no router hooks ({e})", flush=True)
    with torch.no_grad():
        x = torch.tensor([ids.tolist()], dtype=torch.long, device="cuda")
        ref = model(input_ids=x, use_cache=False).logits[0].float().cpu().numpy()
        k = cfg.get("num_experts_per_tok", cfg.get("experts_per_token", 4))
        gaps = []
        for mod, h in router_in:
            if not hasattr(mod, "weight") or not hasattr(mod, "bias"):
                gaps = []
                break
            lg = torch.nn.functional.linear(h.double(), mod.weight.double(), mod.bias.double())
            top = torch.topk(lg, k + 1, dim=-1).values
            gaps.append((top[:, k - 1] - top[:, k]).cpu().numpy())
    for hk in hooks:
        hk.remove()
    result["decode_path_vs_fp32"] = compare(ours_steps, ref, a.margin)
    result["prefill_path_vs_fp32"] = compare(ours_pre, ref, a.margin)
    if gaps:
        g = np.stack(gaps)  # [layers, positions]
        mins = g.min(axis=0)
        result["router_topk_gap"] = {
            "what": "per position, over layers, the smallest gap between the k-th and (k+1)-th router logit (float64 on the reference's inputs)",
            "median": float(np.median(mins)),
            "positions_under_1e-4": int((mins < 1e-4).sum()),
            "positions_under_1e-5": int((mins < 1e-5).sum()),
            "at_positions_over_0.05": {p: {"gap": float(mins[int(p)]), "layer": int(g[:, int(p)].argmin())}
                                       for p in result["decode_path_vs_fp32"]["positions_over_0.05"]},
            "smallest": [{"position": int(i), "gap": float(mins[i]), "layer": int(g[:, i].argmin())}
                         for i in np.argsort(mins)[:5]],
        }
    if ours_cpu is not None:
        result["cpu_backend_vs_fp32"] = compare(ours_cpu, ref, a.margin)
    print(json.dumps({k: v for k, v in result.items() if isinstance(v, dict)}, indent=1), flush=True)

    if not a.skip_speed:
        model = model.to(torch.bfloat16)
        torch.cuda.synchronize()
        p = torch.tensor([rng.integers(0, 199998, size=a.prompt).tolist()], dtype=torch.long, device="cuda")

        def prefill():
            torch.cuda.synchronize()
            t = time.time()
            out = model(input_ids=p, use_cache=True)
            torch.cuda.synchronize()
            return out, time.time() - t

        def decode(out):
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            t = time.time()
            for _ in range(a.gen):
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            return time.time() - t

        with torch.no_grad():
            out, _ = prefill()  # warm-up
            decode(out)
            pre, dec = [], []
            for _ in range(2):
                out, tp = prefill()
                pre.append(a.prompt / tp)
                dec.append(a.gen / decode(out))
        result["transformers_bf16"] = {
            "attn_implementation": "eager", "prompt": a.prompt, "gen": a.gen,
            "prefill_tok_s": max(pre), "decode_tok_s": max(dec),
            "prefill_samples": pre, "decode_samples": dec,
            "gpu_max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
        print(json.dumps(result["transformers_bf16"], indent=1), flush=True)
    text = json.dumps(result, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
