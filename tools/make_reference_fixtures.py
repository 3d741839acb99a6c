#!/usr/bin/env python3
"""Reference fixtures from Hugging Face transformers for small random gpt-oss models.

Runs where torch + transformers + safetensors + numpy are installed (the GPU machine;
no internet needed). For every fixture below it:
  1. builds tools/gen_checkpoint.c (cc) and writes the checkpoint with the fixture's args;
  2. loads it with GptOssForCausalLM in float32, eager attention, MXFP4 dequantized;
  3. checks that EVERY parameter of the loaded model equals the checkpoint: bf16 tensors
     bit for bit, expert weights against an independent numpy MXFP4 dequantization that
     follows the spec (low nibble first, E2M1 table, scale 2^(s-127)); any difference,
     missing or unexpected parameter aborts the script;
  4. writes tests/fixtures/<name>.json and <name>.logits.f32 (T x vocab float32 LE from one
     forward over `ids`), plus a greedy continuation built as a step-by-step argmax over
     full forward logits (not generate()) with the top1-top2 margin of every step.

usage: make_reference_fixtures.py [--out tests/fixtures] [--gen PATH] [--device cpu|cuda]
                                  [--only NAME] [--dry-run]
--dry-run writes the checkpoints and checks their safetensors headers without torch.
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, gen_checkpoint args, tokens, seed for the ids. Shapes avoid 2*I == H and
# I == H so the orientation of transformers' expert matrices is never ambiguous.
FIXTURES = [
    # odd layer count, hidden and intermediate multiples of 32 but not 64, window 8
    ("l3_h96", ["--layers", "3", "--hidden", "96", "--intermediate", "160", "--heads", "6",
                "--kv-heads", "2", "--head-dim", "16", "--experts", "4", "--top-k", "2",
                "--vocab", "1000", "--window", "8", "--seed", "11"], 40, 101),
    # five layers, one KV head, head_dim 8, index.json layout (one shard)
    ("l5_kv1", ["--layers", "5", "--hidden", "64", "--intermediate", "96", "--heads", "4",
                "--kv-heads", "1", "--head-dim", "8", "--experts", "6", "--top-k", "3",
                "--vocab", "1500", "--window", "16", "--seed", "22", "--shard-mb", "1"], 64, 202),
    # head_dim 64 (the real one), heads == kv heads, 8 experts top-4
    ("l2_hd64", ["--layers", "2", "--hidden", "128", "--intermediate", "96", "--heads", "2",
                 "--kv-heads", "2", "--head-dim", "64", "--experts", "8", "--top-k", "4",
                 "--vocab", "2000", "--window", "16", "--seed", "33"], 48, 303),
    # hidden 160 (5 blocks), 4 layers, top-1 routing, q width != hidden
    ("l4_h160", ["--layers", "4", "--hidden", "160", "--intermediate", "224", "--heads", "5",
                 "--kv-heads", "1", "--head-dim", "24", "--experts", "3", "--top-k", "1",
                 "--vocab", "1200", "--window", "12", "--seed", "44"], 56, 404),
]
GREEDY_PROMPT = 8
GREEDY_STEPS = 32

E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


class FixtureError(Exception):
    pass


def fail(msg):
    raise FixtureError(msg)


def build_gen(path):
    src = os.path.join(ROOT, "tools", "gen_checkpoint.c")
    cmd = [os.environ.get("CC", "cc"), "-O3", "-std=c11", "-Wall", "-Wextra", "-Werror",
           "-D_GNU_SOURCE", "-o", path, src, "-lm"]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def read_header(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"{path}: shorter than 8 bytes")
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    pos = 0
    spans = sorted(tuple(v["data_offsets"]) for k, v in hdr.items() if k != "__metadata__")
    for b, e in spans:
        if b != pos:
            fail(f"{path}: tensor data not contiguous at {b}")
        pos = e
    if 8 + n + pos != len(data):
        fail(f"{path}: data ends at {8 + n + pos}, file has {len(data)} bytes")
    return hdr


def checkpoint_files(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    return ["model.safetensors"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dequant_mxfp4(np, blocks, scales):
    """Spec section 2: blocks [..., R, C/32, 16] u8, scales [..., R, C/32] u8 -> [..., R, C] f32."""
    lut = np.array(E2M1, dtype=np.float32)
    lo = blocks & 0x0F
    hi = blocks >> 4
    codes = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 32)  # weight k: even=lo, odd=hi
    vals = lut[codes.astype(np.int64)]
    vals = np.ldexp(vals, (scales.astype(np.int32) - 127)[..., None])
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32).astype(np.float32)


def load_reference_tensors(np, d):
    from safetensors.torch import load_file
    out = {}
    for f in checkpoint_files(d):
        for k, v in load_file(os.path.join(d, f)).items():
            out[k] = v
    return out


def verify_model(np, torch, model, d):
    """Every parameter must equal the checkpoint (experts through our own dequantization)."""
    ref = load_reference_tensors(np, d)
    used = set()
    sd = dict(model.named_parameters())
    print("  layer 0 parameters: " + ", ".join(f"{k}{tuple(v.shape)}" for k, v in sd.items()
                                             if k.startswith("model.layers.0.")), flush=True)
    n_expert_checked = 0
    for name, p in sd.items():
        p = p.detach().to("cpu")
        if p.dtype != torch.float32:
            fail(f"{name}: loaded as {p.dtype}, expected float32")
        if name in ref:
            want = ref[name].to(torch.float32)
            used.add(name)
            if tuple(p.shape) != tuple(want.shape) or not torch.equal(p, want):
                fail(f"{name}: differs from the checkpoint")
            continue
        if ".mlp.experts." in name and ("gate_up" in name or "down" in name):
            stem = name[:name.index(".mlp.experts.")] + ".mlp.experts." + \
                ("gate_up_proj" if "gate_up" in name else "down_proj")
            bk, sk = stem + "_blocks", stem + "_scales"
            if bk not in ref or sk not in ref:
                fail(f"{name}: no {bk}/{sk} in the checkpoint")
            used.update([bk, sk])
            mine = dequant_mxfp4(np, ref[bk].numpy(), ref[sk].numpy())  # [E, out, in]
            got = p.numpy()
            # layouts transformers might keep: [E,out,in], [E,in,out]; for gate_up also the
            # interleaved gate/up rows regrouped into halves (values must still match exactly)
            cands = [("[E,out,in]", mine), ("[E,in,out]", mine.transpose(0, 2, 1))]
            if "gate_up" in name:
                halves = np.concatenate([mine[:, 0::2], mine[:, 1::2]], axis=1)
                cands += [("[E,out,in] halves", halves), ("[E,in,out] halves", halves.transpose(0, 2, 1))]
            fits = [(lay, m) for lay, m in cands if m.shape == got.shape]
            if not fits:
                fail(f"{name}: shape {tuple(got.shape)} fits no layout of {mine.shape}")
            match = [lay for lay, m in fits if np.array_equal(got, m)]
            if not match:
                m = fits[0][1]
                bad = tuple(np.argwhere(got != m)[0])
                fail(f"{name}: transformers' dequantized MXFP4 differs from the spec dequantization "
                     f"(layout {fits[0][0]}) at {bad}: {got[bad]} vs {m[bad]}")
            if n_expert_checked < 2:
                print(f"  {name}: {tuple(got.shape)} equals spec dequantization, layout {match[0]}", flush=True)
            n_expert_checked += 1
            continue
        fail(f"{name}: model parameter with no checkpoint tensor (randomly initialised?)")
    unused = sorted(set(ref) - used)
    if unused:
        fail(f"checkpoint tensors not used by the model: {unused[:5]}")
    if n_expert_checked != 2 * model.config.num_hidden_layers:
        fail(f"checked {n_expert_checked} expert matrices, expected {2 * model.config.num_hidden_layers}")
    print(f"  verified {len(sd)} parameters ({n_expert_checked} MXFP4 expert matrices) bit-exact", flush=True)


def spec_forward(np, torch, ref, cfg, ids):
    """Independent float64 numpy forward written from the spec (section 3), used only to
    cross-check transformers: returns [T, vocab] logits."""
    def W(n):
        return ref[n].to(torch.float64).numpy()
    T = len(ids)
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, limit, alpha = cfg["rms_norm_eps"], cfg.get("swiglu_limit", 7.0), 1.702
    k_top, window = cfg["num_experts_per_tok"], cfg["sliding_window"]
    rs = cfg["rope_scaling"]
    base, factor = float(cfg["rope_theta"]), float(rs["factor"])
    half = hd // 2
    f = base ** (-2.0 * np.arange(half) / hd)
    orig = rs["original_max_position_embeddings"]
    low = half * np.log(orig / (rs["beta_fast"] * 2 * np.pi)) / np.log(base)
    high = half * np.log(orig / (rs["beta_slow"] * 2 * np.pi)) / np.log(base)
    if rs.get("truncate", True):
        low, high = np.floor(low), np.ceil(high)
    r = np.clip((np.arange(half) - low) / (high - low), 0, 1)
    inv = f * (1 - r) + f / factor * r
    conc = 0.1 * np.log(factor) + 1
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :] * conc, np.sin(ang)[:, None, :] * conc

    def rope(v):
        x1, x2 = v[..., :half], v[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def rms(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    x = W("model.embed_tokens.weight")[ids]
    tpos = np.arange(T)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, W(p + "input_layernorm.weight"))
        q = (h @ W(p + "self_attn.q_proj.weight").T + W(p + "self_attn.q_proj.bias")).reshape(T, nh, hd)
        k = (h @ W(p + "self_attn.k_proj.weight").T + W(p + "self_attn.k_proj.bias")).reshape(T, nkv, hd)
        v = (h @ W(p + "self_attn.v_proj.weight").T + W(p + "self_attn.v_proj.bias")).reshape(T, nkv, hd)
        q, k = rope(q), rope(k)
        sinks = W(p + "self_attn.sinks")
        visible = tpos[None, :] <= tpos[:, None]
        if cfg["layer_types"][i] == "sliding_attention":
            visible &= tpos[:, None] - tpos[None, :] < window
        out = np.zeros((T, nh, hd))
        for hh in range(nh):
            g = hh // (nh // nkv)
            sc = np.where(visible, q[:, hh] @ k[:, g].T / np.sqrt(hd), -np.inf)
            m = np.maximum(sc.max(-1), sinks[hh])
            e = np.exp(sc - m[:, None])
            out[:, hh] = (e / (e.sum(-1) + np.exp(sinks[hh] - m))[:, None]) @ v[:, g]
        x = x + out.reshape(T, nh * hd) @ W(p + "self_attn.o_proj.weight").T + W(p + "self_attn.o_proj.bias")
        h = rms(x, W(p + "post_attention_layernorm.weight"))
        rl = h @ W(p + "mlp.router.weight").T + W(p + "mlp.router.bias")
        e = p + "mlp.experts."
        gu = dequant_mxfp4(np, ref[e + "gate_up_proj_blocks"].numpy(), ref[e + "gate_up_proj_scales"].numpy())
        dn = dequant_mxfp4(np, ref[e + "down_proj_blocks"].numpy(), ref[e + "down_proj_scales"].numpy())
        gub, dnb = W(e + "gate_up_proj_bias"), W(e + "down_proj_bias")
        moe = np.zeros_like(x)
        for t in range(T):
            top = np.argsort(-rl[t], kind="stable")[:k_top]
            wt = np.exp(rl[t, top] - rl[t, top].max())
            wt /= wt.sum()
            for ex, we in zip(top, wt):
                gg = gu[ex].astype(np.float64) @ h[t] + gub[ex]
                gate, up = np.minimum(gg[0::2], limit), np.clip(gg[1::2], -limit, limit)
                a = gate / (1 + np.exp(-alpha * gate)) * (up + 1)
                moe[t] += we * (dn[ex].astype(np.float64) @ a + dnb[ex])
        x = x + moe
    return rms(x, W("model.norm.weight")) @ W("lm_head.weight").T


def load_model(torch, d, device):
    import transformers
    from transformers import GptOssForCausalLM
    kw = {"attn_implementation": "eager"}
    try:
        from transformers import Mxfp4Config
        kw["quantization_config"] = Mxfp4Config(dequantize=True)
    except ImportError:
        print("  (no Mxfp4Config in this transformers)", flush=True)
    try:
        model = GptOssForCausalLM.from_pretrained(d, dtype=torch.float32, **kw)
    except TypeError:
        model = GptOssForCausalLM.from_pretrained(d, torch_dtype=torch.float32, **kw)
    model = model.float().to(device).eval()
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "eager":
        print(f"  WARNING: attention implementation reads {impl!r}, asked for eager", flush=True)
    print(f"  transformers {transformers.__version__}: {type(model).__name__}, attn={impl}, "
          f"layer_types={model.config.layer_types}, sliding_window={model.config.sliding_window}", flush=True)
    return model


def forward_logits(torch, model, ids, device):
    with torch.no_grad():
        x = torch.tensor([ids], dtype=torch.long, device=device)
        return model(input_ids=x, use_cache=False).logits[0].float().cpu()


def make_fixture(np, torch, gen, name, args, T, id_seed, outdir, device, workdir):
    d = os.path.join(workdir, name)
    subprocess.run([gen, "--out", d] + args, check=True)
    files = checkpoint_files(d)
    for f in files:
        read_header(os.path.join(d, f))
    cfg = json.load(open(os.path.join(d, "config.json")))
    fixture = {
        "name": name,
        "gen_args": args,
        "checkpoint_sha256": {f: sha256(os.path.join(d, f)) for f in files},
        "config": {k: cfg[k] for k in ["num_hidden_layers", "hidden_size", "intermediate_size",
                                        "num_attention_heads", "num_key_value_heads", "head_dim",
                                        "num_local_experts", "num_experts_per_tok", "vocab_size",
                                        "sliding_window"]},
    }
    if torch is None:
        print(f"  {name}: dry run, {len(files)} file(s) ok", flush=True)
        return
    vocab = cfg["vocab_size"]
    rs = np.random.RandomState(id_seed)
    ids = [int(i) for i in rs.randint(0, vocab, size=T)]
    model = load_model(torch, d, device)
    try:
        verify_model(np, torch, model, d)
        errors = []
    except FixtureError as e:  # keep going so the evidence is written, then fail at the end
        print(f"  VERIFICATION FAILED: {e}", flush=True)
        errors = [str(e)]
    logits = forward_logits(torch, model, ids, device)
    if tuple(logits.shape) != (T, vocab) or not torch.isfinite(logits).all():
        fail(f"{name}: bad logits {tuple(logits.shape)}")
    # greedy: step-by-step argmax of full (uncached) forward logits; lowest id on ties
    seq = list(ids[:GREEDY_PROMPT])
    greedy, margins = [], []
    for _ in range(GREEDY_STEPS):
        last = forward_logits(torch, model, seq, device)[-1]
        top = torch.topk(last, 2)
        best = int(torch.argmax(last))
        greedy.append(best)
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(best)
    # consistency: the prompt's last-position logits from the long forward agree
    p_last = forward_logits(torch, model, ids[:GREEDY_PROMPT], device)[-1]
    diff = float((p_last - logits[GREEDY_PROMPT - 1]).abs().max())
    print(f"  prefix forward vs full forward at position {GREEDY_PROMPT - 1}: max |diff| = {diff:.3g}", flush=True)
    if diff > 1e-3:
        errors.append(f"prefix forward differs from the full forward by {diff}")
    try:
        spec = spec_forward(np, torch, load_reference_tensors(np, d), cfg, ids)
        spec_diff = float(np.abs(spec - logits.numpy().astype(np.float64)).max())
    except Exception as e:
        import traceback
        traceback.print_exc()
        spec_diff = None
        print(f"  spec forward failed: {e}", flush=True)
    print(f"  independent numpy (spec) forward vs transformers: max |diff| = {spec_diff}", flush=True)
    if spec_diff is not None and spec_diff > 2e-3:
        print(f"  WARNING: {name}: transformers and the spec forward disagree by {spec_diff}", flush=True)
    import transformers
    fixture.update({
        "verified_weights": not errors,
        "verification_errors": errors,
        "spec_numpy_max_abs_diff": spec_diff,
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, "
                     f"eager attention, {device}, MXFP4 dequantized (verified bit-exact)",
        "ids": ids,
        "logits_file": name + ".logits.f32",
        "logits_shape": [T, vocab],
        "logits_abs_max": float(logits.abs().max()),
        "logits_std": float(logits.std()),
        "greedy_prompt": seq[:GREEDY_PROMPT],
        "greedy": greedy,
        "greedy_margins": margins,
    })
    logits.numpy().astype("<f4").tofile(os.path.join(outdir, name + ".logits.f32"))
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    if errors:
        fail("fixture written with verified_weights=false: " + errors[0])
    print(f"  {name}: T={T} vocab={vocab} |logits|max={fixture['logits_abs_max']:.3f} "
          f"std={fixture['logits_std']:.3f} min margin={min(margins):.4f} greedy={greedy[:8]}...",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--gen", default=None, help="prebuilt gen_checkpoint (default: build one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default=None)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="gptoss-fixtures-")
    failed = []
    try:
        gen = a.gen
        if gen is None:
            gen = os.path.join(workdir, "gen_checkpoint")
            build_gen(gen)
        np = torch = None
        if not a.dry_run:
            import numpy as np
            import torch
            torch.manual_seed(0)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")
        for name, args, T, id_seed in FIXTURES:
            if a.only and name != a.only:
                continue
            print(f"== {name}", flush=True)
            try:
                make_fixture(np, torch, gen, name, args, T, id_seed, a.out, a.device, workdir)
            except Exception as e:  # report every fixture, then fail
                import traceback
                traceback.print_exc()
                print(f"FAIL: {name}: {e}", file=sys.stderr, flush=True)
                failed.append(name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print("FAILED: " + " ".join(failed), flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
