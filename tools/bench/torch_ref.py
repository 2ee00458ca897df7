#!/usr/bin/env python3
"""PyTorch CPU reference for tools/bench: the same LLaMA as @moreau/models in plain torch.

Hugging Face semantics (rotate_half RoPE, GQA via repeat_kv, SwiGLU MLP, RMSNorm, untied or tied
head), no `transformers`. Driven by tools/bench/run.ts through a JSON spec file:

    python3 tools/bench/torch_ref.py SPEC.json     # prints one JSON object on its last stdout line

    python3 tools/bench/torch_ref.py --probe       # {"torch": version, "threads": n} or exit 3

SPEC fields:
  task        "fb" | "eval" | "moreau"
  config      the LlamaConfig of the TS side (camelCase field names)
  weights     {"kind": "llama2c", "path": ...} (read here with struct/numpy, wq/wk rows permuted
              to rotate_half exactly as the TS loader does) | {"kind": "safetensors", "path": ...}
              (float32, written by the TS side) | {"kind": "random", "seed": n} (N(0, 0.02^2))
  threads     torch.set_num_threads
  ids         fb: [B][T] token ids; eval: [N][T] windows; moreau: [iterations][B][T]
  repeats     timed repetitions (fb / eval), after `warmup` untimed ones
  batch       eval: windows per forward call
  moreau      {"iterations", "averageLast", "noiseStd", "lr", "soft"}
"""
import json
import math
import os
import resource
import struct
import sys
import time


def probe():
    try:
        import torch  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the machine
        print(json.dumps({"error": f"torch not importable: {e}"}))
        sys.exit(3)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version.split()[0]}))


def peak_rss_bytes():
    # Linux: ru_maxrss is in KiB. VmHWM agrees; read it when present.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----- weights -------------------------------------------------------------------------------


def layer_names(cfg):
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["numHiddenLayers"]):
        p = f"model.layers.{i}"
        names += [
            f"{p}.input_layernorm.weight",
            f"{p}.self_attn.q_proj.weight",
            f"{p}.self_attn.k_proj.weight",
            f"{p}.self_attn.v_proj.weight",
            f"{p}.self_attn.o_proj.weight",
            f"{p}.post_attention_layernorm.weight",
            f"{p}.mlp.gate_proj.weight",
            f"{p}.mlp.up_proj.weight",
            f"{p}.mlp.down_proj.weight",
        ]
    names.append("model.norm.weight")
    if not cfg.get("tieWordEmbeddings", False):
        names.append("lm_head.weight")
    return names


def shapes(cfg):
    h, hd, inter = cfg["hiddenSize"], cfg["headDim"], cfg["intermediateSize"]
    heads, kv, V = cfg["numAttentionHeads"], cfg["numKeyValueHeads"], cfg["vocabSize"]
    out = {}
    for n in layer_names(cfg):
        if n.endswith("layernorm.weight") or n == "model.norm.weight":
            out[n] = (h,)
        elif n.endswith("q_proj.weight"):
            out[n] = (heads * hd, h)
        elif n.endswith(("k_proj.weight", "v_proj.weight")):
            out[n] = (kv * hd, h)
        elif n.endswith("o_proj.weight"):
            out[n] = (h, heads * hd)
        elif n.endswith(("gate_proj.weight", "up_proj.weight")):
            out[n] = (inter, h)
        elif n.endswith("down_proj.weight"):
            out[n] = (h, inter)
        else:  # embed_tokens, lm_head
            out[n] = (V, h)
    return out


def load_llama2c(path):
    """llama2.c legacy (version 0) checkpoint -> (header dict, {HF name: np.float32 array})."""
    import numpy as np

    with open(path, "rb") as f:
        raw = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    kv_dim = n_kv * hd
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = data[pos : pos + n].reshape(shape)
        pos += n
        return a

    def to_hf(w, heads):  # llama2.c adjacent-pair RoPE rows -> rotate_half rows
        cols = w.shape[-1]
        return w.reshape(heads, hd // 2, 2, cols).transpose(0, 2, 1, 3).reshape(heads * hd, cols)

    p = "model.layers.{}"
    t = {"model.embed_tokens.weight": take(vocab, dim)}
    for i, w in enumerate(take(n_layers, dim)):
        t[p.format(i) + ".input_layernorm.weight"] = w
    for i, w in enumerate(take(n_layers, dim, dim)):
        t[p.format(i) + ".self_attn.q_proj.weight"] = to_hf(w, n_heads)
    for i, w in enumerate(take(n_layers, kv_dim, dim)):
        t[p.format(i) + ".self_attn.k_proj.weight"] = to_hf(w, n_kv)
    for i, w in enumerate(take(n_layers, kv_dim, dim)):
        t[p.format(i) + ".self_attn.v_proj.weight"] = w
    for i, w in enumerate(take(n_layers, dim, dim)):
        t[p.format(i) + ".self_attn.o_proj.weight"] = w
    for i, w in enumerate(take(n_layers, dim)):
        t[p.format(i) + ".post_attention_layernorm.weight"] = w
    for i, w in enumerate(take(n_layers, hidden, dim)):
        t[p.format(i) + ".mlp.gate_proj.weight"] = w
    for i, w in enumerate(take(n_layers, dim, hidden)):
        t[p.format(i) + ".mlp.down_proj.weight"] = w
    for i, w in enumerate(take(n_layers, hidden, dim)):
        t[p.format(i) + ".mlp.up_proj.weight"] = w
    t["model.norm.weight"] = take(dim)
    take(seq_len, hd // 2)  # freq_cis_real (unused)
    take(seq_len, hd // 2)  # freq_cis_imag (unused)
    if not shared:
        t["lm_head.weight"] = take(vocab, dim)
    return t


def load_safetensors(path):
    import numpy as np

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"torch_ref: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(mm[base + a : base + b], dtype="<f4").reshape(info["shape"])
    return out


def load_weights(spec, cfg):
    import torch

    w = spec["weights"]
    if w["kind"] == "llama2c":
        arrays = load_llama2c(w["path"])
    elif w["kind"] == "safetensors":
        arrays = load_safetensors(w["path"])
    elif w["kind"] == "random":
        g = torch.Generator().manual_seed(int(w.get("seed", 0)))
        params = {}
        for n, s in shapes(cfg).items():
            params[n] = torch.ones(s) if len(s) == 1 else torch.randn(s, generator=g) * 0.02
        return params
    else:
        raise SystemExit(f"torch_ref: unknown weights kind {w['kind']}")
    want = shapes(cfg)
    params = {}
    for n, s in want.items():
        if n not in arrays:
            raise SystemExit(f"torch_ref: weights lack {n}")
        a = arrays[n]
        if tuple(a.shape) != tuple(s):
            raise SystemExit(f"torch_ref: {n} has shape {tuple(a.shape)}, expected {s}")
        params[n] = torch.tensor(a, dtype=torch.float32)  # a private copy
    return params


# ----- the model -----------------------------------------------------------------------------


class Llama:
    def __init__(self, cfg, seq_len):
        import torch

        self.cfg = cfg
        hd = cfg["headDim"]
        inv = 1.0 / (cfg["ropeTheta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        t = torch.arange(seq_len, dtype=torch.int64).float()
        freqs = torch.outer(t, inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos()[None, None]  # [1, 1, T, hd]
        self.sin = emb.sin()[None, None]
        self.mask = torch.full((seq_len, seq_len), float("-inf")).triu(1)

    @staticmethod
    def rms_norm(x, w, eps):
        import torch

        var = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(var + eps))

    @staticmethod
    def rotate_half(x):
        import torch

        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def hidden(self, p, ids):
        import torch
        import torch.nn.functional as F

        c = self.cfg
        B, T = ids.shape
        H, KV, hd, eps = c["numAttentionHeads"], c["numKeyValueHeads"], c["headDim"], c["rmsNormEps"]
        cos, sin, mask = self.cos[:, :, :T], self.sin[:, :, :T], self.mask[:T, :T]
        x = F.embedding(ids, p["model.embed_tokens.weight"])
        for i in range(c["numHiddenLayers"]):
            pre = f"model.layers.{i}"
            h = self.rms_norm(x, p[f"{pre}.input_layernorm.weight"], eps)
            q = F.linear(h, p[f"{pre}.self_attn.q_proj.weight"]).view(B, T, H, hd).transpose(1, 2)
            k = F.linear(h, p[f"{pre}.self_attn.k_proj.weight"]).view(B, T, KV, hd).transpose(1, 2)
            v = F.linear(h, p[f"{pre}.self_attn.v_proj.weight"]).view(B, T, KV, hd).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if H != KV:  # repeat_kv
                k = k[:, :, None].expand(B, KV, H // KV, T, hd).reshape(B, H, T, hd)
                v = v[:, :, None].expand(B, KV, H // KV, T, hd).reshape(B, H, T, hd)
            s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
            a = torch.matmul(F.softmax(s, dim=-1, dtype=torch.float32), v)
            a = a.transpose(1, 2).reshape(B, T, H * hd)
            x = x + F.linear(a, p[f"{pre}.self_attn.o_proj.weight"])
            h = self.rms_norm(x, p[f"{pre}.post_attention_layernorm.weight"], eps)
            g = F.linear(h, p[f"{pre}.mlp.gate_proj.weight"])
            u = F.linear(h, p[f"{pre}.mlp.up_proj.weight"])
            x = x + F.linear(F.silu(g) * u, p[f"{pre}.mlp.down_proj.weight"])
        return self.rms_norm(x, p["model.norm.weight"], eps)

    def logits(self, p, ids):
        import torch.nn.functional as F

        head = p["model.embed_tokens.weight"] if self.cfg.get("tieWordEmbeddings") else p["lm_head.weight"]
        return F.linear(self.hidden(p, ids), head)

    def loss(self, p, ids):
        import torch.nn.functional as F

        V = self.cfg["vocabSize"]
        # As Hugging Face's LlamaForCausalLM: logits of every position, loss on the shifted ones.
        logits = self.logits(p, ids)[:, :-1]
        return F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))

    def token_nll(self, p, ids):
        import torch.nn.functional as F

        logits = self.logits(p, ids)[:, :-1]
        logp = F.log_softmax(logits, dim=-1)
        return -logp.gather(-1, ids[:, 1:, None])[..., 0]


# ----- tasks ---------------------------------------------------------------------------------


def members_of(cfg):
    out = []
    for i in range(cfg["numHiddenLayers"]):
        p = f"model.layers.{i}"
        out += [
            f"{p}.self_attn.q_proj.weight",
            f"{p}.self_attn.k_proj.weight",
            f"{p}.self_attn.v_proj.weight",
            f"{p}.self_attn.o_proj.weight",
            f"{p}.mlp.gate_proj.weight",
            f"{p}.mlp.up_proj.weight",
            f"{p}.mlp.down_proj.weight",
        ]
    return out


def run(spec):
    import torch

    threads = int(spec.get("threads", 2))
    torch.set_num_threads(threads)
    torch.manual_seed(int(spec.get("seed", 1)))
    cfg = spec["config"]
    task = spec["task"]
    t0 = time.perf_counter()
    params = load_weights(spec, cfg)
    load_s = time.perf_counter() - t0
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interopThreads": torch.get_num_interop_threads(),
        "task": task,
        "loadSeconds": load_s,
        "openblasCoretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    repeats = int(spec.get("repeats", 3))
    warmup = int(spec.get("warmup", 1))

    if task == "fb":
        ids = torch.tensor(spec["ids"], dtype=torch.int64)
        model = Llama(cfg, ids.shape[1])
        for w in params.values():
            w.requires_grad_(True)
        times = []
        loss_value = None
        for r in range(warmup + repeats):
            t = time.perf_counter()
            loss = model.loss(params, ids)
            grads = torch.autograd.grad(loss, list(params.values()))
            dt = time.perf_counter() - t
            del grads
            loss_value = float(loss.detach())
            if r >= warmup:
                times.append(dt)
        out.update({"loss": loss_value, "seconds": times})
    elif task == "eval":
        windows = torch.tensor(spec["ids"], dtype=torch.int64)
        B = int(spec.get("batch", 8))
        model = Llama(cfg, windows.shape[1])
        times = []
        nll_sum, count = 0.0, 0
        with torch.no_grad():
            for r in range(warmup + repeats):
                t = time.perf_counter()
                s, n = 0.0, 0
                for start in range(0, windows.shape[0], B):
                    nll = model.token_nll(params, windows[start : start + B])
                    s += float(nll.double().sum())
                    n += nll.numel()
                dt = time.perf_counter() - t
                nll_sum, count = s, n
                if r >= warmup:
                    times.append(dt)
        out.update({"nll": nll_sum / count, "positions": count, "seconds": times})
    elif task == "moreau":
        m = spec["moreau"]
        iters, avg_last = int(m["iterations"]), min(int(m["averageLast"]), int(m["iterations"]))
        std, lr, soft = float(m["noiseStd"]), float(m["lr"]), float(m["soft"])
        batches = torch.tensor(spec["ids"], dtype=torch.int64)  # [iterations, B, T]
        model = Llama(cfg, batches.shape[2])
        members = members_of(cfg)
        t = time.perf_counter()
        delta = {p: torch.zeros_like(params[p]) for p in members}
        avg = {p: torch.zeros_like(params[p]) for p in members}
        iter_times = []
        for it in range(iters):
            ti = time.perf_counter()
            point = {}
            with torch.no_grad():
                for p in members:
                    w = params[p]
                    point[p] = (w + std * w.abs() * torch.randn_like(w) + delta[p]).requires_grad_(True)
            full = dict(params)
            full.update(point)
            loss = model.loss(full, batches[min(it, batches.shape[0] - 1)])
            grads = torch.autograd.grad(loss, [point[p] for p in members])
            with torch.no_grad():
                for p, g in zip(members, grads):
                    d = delta[p]
                    d.sub_(lr * g)
                    rows = d.reshape(d.shape[0], -1) if d.dim() >= 2 else d.reshape(-1, 1)
                    n = rows.pow(2).mean(dim=1, keepdim=True).sqrt()
                    scale = torch.where(n > soft * lr, 1 - soft / n, torch.zeros_like(n))
                    rows.mul_(scale)
                    if it >= iters - avg_last:
                        avg[p].add_(d / avg_last)
            del point, full, grads, loss
            iter_times.append(time.perf_counter() - ti)
        with torch.no_grad():
            salience = {p: params[p] * avg[p] for p in members}
        total = time.perf_counter() - t
        checksum = float(sum(float(s.abs().double().sum()) for s in salience.values()))
        out.update({"seconds": [total], "iterationSeconds": iter_times, "salienceAbsSum": checksum})
    else:
        raise SystemExit(f"torch_ref: unknown task {task}")
    model_bytes = sum(w.numel() for w in params.values()) * 4
    out.update({"peakRssBytes": peak_rss_bytes(), "modelBytes": model_bytes})
    return out


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--probe":
        probe()
        return
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    print(json.dumps(run(spec)))


if __name__ == "__main__":
    main()
