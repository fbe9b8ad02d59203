"""An independent float64 forward pass of llama / qwen2 models, written with numpy from the
architecture's definition (not from rig's C code), reading the same GGUF file: the oracle that
`rig logits` is checked against.

    forward.py MODEL.gguf 1,2,3 OUT.f64     # logits [n_tokens][n_vocab] as float64
"""
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "unit"))
import gguf_reference  # noqa: E402  (an independent GGUF parser)
import quant_reference  # noqa: E402  (independent dequantizers)

DEQUANT = {0: quant_reference.deq_f32, 1: quant_reference.deq_f16, 30: quant_reference.deq_bf16,
           2: quant_reference.deq_q4_0, 8: quant_reference.deq_q8_0, 12: quant_reference.deq_q4_K,
           13: quant_reference.deq_q5_K, 14: quant_reference.deq_q6_K}


class Tensor:
    def __init__(self, ggml_type, ne, data):
        self.type, self.ne, self.data = ggml_type, ne, data


def read_gguf(path):
    """(metadata {str: value}, tensors {str: Tensor}) through the independent parser."""
    with open(path, "rb") as f:
        data = f.read()
    g = gguf_reference.parse(data)
    kv = {}
    for key, (t, v) in g["kv"].items():
        kv[key.decode()] = v.decode() if isinstance(v, bytes) else v
    tensors = {}
    for name, dims, t, offset in g["tensors"]:
        start = g["data_offset"] + offset
        tensors[name.decode()] = Tensor(t, dims, data[start:start + gguf_reference.tensor_bytes(t, dims)])
    return kv, tensors


class Model:
    def __init__(self, path):
        kv, self.tensors = read_gguf(path)
        self.arch = kv["general.architecture"]
        a = self.arch
        self.n_embd = kv[f"{a}.embedding_length"]
        self.n_layer = kv[f"{a}.block_count"]
        self.n_head = kv[f"{a}.attention.head_count"]
        self.n_head_kv = kv.get(f"{a}.attention.head_count_kv", self.n_head)
        self.head_dim = kv.get(f"{a}.attention.key_length", self.n_embd // self.n_head)
        self.eps = kv[f"{a}.attention.layer_norm_rms_epsilon"]
        self.base = kv.get(f"{a}.rope.freq_base", 10000.0)
        self.neox = a == "qwen2"
        self.cache = {}

    def t(self, name):
        """A tensor as float64, shaped [ne1][ne0] (rows of ne0)."""
        if name not in self.cache:
            info = self.tensors.get(name)
            if info is None:
                return None
            flat = DEQUANT[info.type](np.frombuffer(info.data, dtype=np.uint8)).astype(np.float64)
            self.cache[name] = flat.reshape(list(reversed(info.ne))) if len(info.ne) > 1 else flat
        return self.cache[name]


def bias(m, name):
    """qwen2's QKV bias, or 0 where the model has none."""
    b = m.t(name)
    return 0.0 if b is None else b


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def rope(v, pos, m, freqs):
    """v: [heads][head_dim], rotated in place by position pos."""
    d = m.head_dim
    half = d // 2
    i = np.arange(half)
    theta = pos * m.base ** (-2.0 * i / d)
    if freqs is not None:
        theta = theta / freqs
    c, s = np.cos(theta), np.sin(theta)
    out = v.copy()
    if m.neox:
        a, b = v[:, :half], v[:, half:]
        out[:, :half], out[:, half:] = a * c - b * s, a * s + b * c
    else:
        a, b = v[:, 0::2], v[:, 1::2]
        out[:, 0::2], out[:, 1::2] = a * c - b * s, a * s + b * c
    return out


def forward(m, tokens):
    emb = m.t("token_embd.weight")
    out_w = m.t("output.weight")
    if out_w is None:
        out_w = emb
    freqs = m.t("rope_freqs.weight")
    group = m.n_head // m.n_head_kv
    keys = [[] for _ in range(m.n_layer)]
    values = [[] for _ in range(m.n_layer)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = emb[tok].copy()
        for l in range(m.n_layer):
            p = f"blk.{l}."
            h = rmsnorm(x, m.t(p + "attn_norm.weight"), m.eps)
            q, k, v = (m.t(p + f"attn_{n}.weight") @ h + bias(m, p + f"attn_{n}.bias") for n in "qkv")
            q = rope(q.reshape(m.n_head, m.head_dim), pos, m, freqs)
            k = rope(k.reshape(m.n_head_kv, m.head_dim), pos, m, freqs)
            keys[l].append(k)
            values[l].append(v.reshape(m.n_head_kv, m.head_dim))
            K = np.stack(keys[l])        # [t][kv_head][d]
            V = np.stack(values[l])
            att = np.zeros((m.n_head, m.head_dim))
            for hh in range(m.n_head):
                kvh = hh // group
                scores = K[:, kvh, :] @ q[hh] / math.sqrt(m.head_dim)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                att[hh] = w @ V[:, kvh, :]
            x = x + m.t(p + "attn_output.weight") @ att.reshape(-1)
            h = rmsnorm(x, m.t(p + "ffn_norm.weight"), m.eps)
            g = m.t(p + "ffn_gate.weight") @ h
            u = m.t(p + "ffn_up.weight") @ h
            x = x + m.t(p + "ffn_down.weight") @ (g / (1.0 + np.exp(-g)) * u)
        logits.append(out_w @ rmsnorm(x, m.t("output_norm.weight"), m.eps))
    return np.stack(logits)


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model = Model(argv[1])
    tokens = [int(t) for t in argv[2].split(",")]
    forward(model, tokens).astype("<f8").tofile(argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
