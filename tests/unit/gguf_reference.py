#!/usr/bin/env python3
"""A second, independent GGUF reader and writer (stdlib only, written from ggml docs/gguf.md,
not from gguf.c) that checks rig's GGUF code both ways:

  - files rig's writer makes (test_gguf --write-reference) parse here to the same keys,
    values, tensor names, shapes, types, offsets, padding and data bytes;
  - files written here (every value type, general.alignment = 64, GGUF v2 and v3) read in
    rig's reader as written (test_gguf --check-python).

Usage: gguf_reference.py PATH/TO/test_gguf   (or RIG_GGUF_HELPER=PATH/TO/test_gguf)
"""
import os
import struct
import subprocess
import sys
import tempfile
import unittest

HELPER = os.environ.get("RIG_GGUF_HELPER")

# value types: id -> struct format (None: string / array)
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# tensor types rig writes: id -> (elements per block, bytes per block)
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 13: (256, 176),
          14: (256, 210), 30: (1, 2)}


def pattern(tensor, n):
    """The bytes test_gguf.c puts in tensor number `tensor`: (j * 7 + tensor * 13 + 1) & 0xff."""
    return bytes((j * 7 + tensor * 13 + 1) & 0xFF for j in range(n))


def tensor_bytes(ggml_type, dims):
    per_block, block_bytes = BLOCKS[ggml_type]
    assert dims[0] % per_block == 0, (ggml_type, dims)
    n = dims[0] // per_block * block_bytes
    for d in dims[1:]:
        n *= d
    return n


def align(n, a):
    return n + (a - n % a) % a


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n > len(self.data) - self.pos:
            raise ValueError(f"truncated at {self.pos}: need {n}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.unpack("<Q"))

    def value(self, t):
        if t in SCALAR:
            v = self.unpack(SCALAR[t])
            if t == BOOL:
                assert v in (0, 1), v
                v = bool(v)
            return v
        if t == STR:
            return self.string()
        if t == ARR:
            et = self.unpack("<I")
            n = self.unpack("<Q")
            assert et != ARR, "nested array"
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError(f"unknown value type {t}")


def parse(data):
    """Returns a dict: version, kv {key bytes: (type, value)}, tensors [(name, dims, type,
    offset)], alignment, data_offset. Arrays are (element type, [values])."""
    r = Reader(data)
    assert r.take(4) == b"GGUF", "magic"
    version = r.unpack("<I")
    assert version in (2, 3), version
    n_tensors = r.unpack("<Q")
    n_kv = r.unpack("<Q")
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        t = r.unpack("<I")
        assert key not in kv, key
        kv[key] = (t, r.value(t))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        dims = [r.unpack("<Q") for _ in range(n_dims)]
        t = r.unpack("<I")
        offset = r.unpack("<Q")
        tensors.append((name, dims, t, offset))
    alignment = 32
    if b"general.alignment" in kv:
        t, alignment = kv[b"general.alignment"]
        assert t == U32
    return {"version": version, "kv": kv, "tensors": tensors, "alignment": alignment,
            "data_offset": align(r.pos, alignment), "infos_end": r.pos}


class Writer:
    """Writes what the spec says, nothing more: used to feed rig's reader."""

    def __init__(self, version, alignment=None):
        self.version = version
        self.alignment = alignment or 32
        self.kv = b""
        self.n_kv = 0
        self.tensors = []
        if alignment:
            self.add(b"general.alignment", U32, alignment)

    @staticmethod
    def enc_str(s):
        return struct.pack("<Q", len(s)) + s

    def enc_value(self, t, v):
        if t in SCALAR:
            return struct.pack(SCALAR[t], int(v) if t == BOOL else v)
        if t == STR:
            return self.enc_str(v)
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(self.enc_value(et, x) for x in items)

    def add(self, key, t, v):
        self.kv += self.enc_str(key) + struct.pack("<I", t) + self.enc_value(t, v)
        self.n_kv += 1

    def add_tensor(self, name, ggml_type, dims, data):
        assert len(data) == tensor_bytes(ggml_type, dims)
        self.tensors.append((name, ggml_type, dims, data))

    def bytes(self):
        out = b"GGUF" + struct.pack("<IQQ", self.version, len(self.tensors), self.n_kv) + self.kv
        offset = 0
        for name, t, dims, data in self.tensors:
            out += self.enc_str(name) + struct.pack("<I", len(dims))
            out += b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", t, offset)
            offset = align(offset + len(data), self.alignment)
        out += bytes(align(len(out), self.alignment) - len(out))
        for _, _, _, data in self.tensors:
            out += data + bytes(align(len(data), self.alignment) - len(data))
        return out


def every_type_writer(version):
    """The file test_gguf.c check_python() expects: kvs_every_type() plus general.alignment 64."""
    w = Writer(version, alignment=64)
    w.add(b"t.u8", U8, 200)
    w.add(b"t.i8", I8, -100)
    w.add(b"t.u16", U16, 60000)
    w.add(b"t.i16", I16, -30000)
    w.add(b"t.u32", U32, 4000000000)
    w.add(b"t.i32", I32, -2000000000)
    w.add(b"t.f32", F32, 1.5)
    w.add(b"t.bool", BOOL, True)
    w.add(b"t.str", STR, b"hi")
    w.add(b"t.u64", U64, (1 << 63) + 5)
    w.add(b"t.i64", I64, -(1 << 62))
    w.add(b"t.f64", F64, -0.1)
    w.add(b"a.u8", ARR, (U8, [1, 2, 3]))
    w.add(b"a.i16", ARR, (I16, [-1, 7]))
    w.add(b"a.f64", ARR, (F64, [0.5, -2.0]))
    w.add(b"a.bool", ARR, (BOOL, [False, True]))
    w.add(b"a.str", ARR, (STR, [b"x", b"", b"y\0z"]))
    w.add(b"a.empty", ARR, (STR, []))
    w.add(b"\xff\xfe not utf-8", STR, b"\xc3\x28")
    for i, (name, t, dims) in enumerate([(b"w", 8, [32, 2]), (b"v", 0, [5]), (b"k", 12, [256])]):
        w.add_tensor(name, t, dims, pattern(i, tensor_bytes(t, dims)))
    return w


# What test_gguf.c write_reference() writes with rig's writer.
REF_KV = {
    b"general.architecture": (STR, b"llama"),
    b"rig.test.u32": (U32, 4000000000),
    b"rig.test.i32": (I32, -123456),
    b"rig.test.f32": (F32, 0.15625),
    b"rig.test.true": (BOOL, True),
    b"rig.test.false": (BOOL, False),
    b"rig.test.utf8": (STR, "héllo ✓".encode()),
    b"tokenizer.ggml.tokens": (ARR, (STR, [b"<unk>", b"<s>", b"</s>", b"", b"a\0b", "▁the".encode()])),
    b"tokenizer.ggml.scores": (ARR, (F32, [0.0, -1.5, 2.25, 3.0, -0.5, 0.125])),
    b"tokenizer.ggml.token_type": (ARR, (I32, [2, 3, 3, 1, 1, 1])),
    b"rig.test.empty": (ARR, (I32, [])),
}
REF_TENSORS = [
    (b"token_embd.weight", [64, 6], 8),
    (b"blk.0.attn_norm.weight", [64], 0),
    (b"blk.0.attn_q.weight", [256, 3], 12),
    (b"blk.0.ffn_down.weight", [256, 2], 14),
    (b"blk.0.ffn_up.weight", [256, 1, 1, 2], 13),
    (b"blk.0.attn_k.weight", [32, 5], 2),
    (b"blk.0.attn_v.weight", [32, 2, 3], 30),
    (b"output.weight", [3, 7], 1),
]


def run_helper(*args):
    if not HELPER:
        raise unittest.SkipTest("no test_gguf helper given")
    p = subprocess.run([HELPER, *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


class ReferenceParserSelfCheck(unittest.TestCase):
    def test_python_writer_and_parser_agree(self):
        data = every_type_writer(3).bytes()
        g = parse(data)
        self.assertEqual(g["kv"][b"t.i64"], (I64, -(1 << 62)))
        self.assertEqual(g["kv"][b"a.str"], (ARR, (STR, [b"x", b"", b"y\0z"])))
        self.assertEqual([t[3] for t in g["tensors"]], [0, 128, 192])
        self.assertEqual(g["data_offset"] % 64, 0)


class RigWriterReadsTheSameHere(unittest.TestCase):
    def test_reference_file_parses_to_what_was_written(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rig-gguf-roundtrip.gguf")
            rc, out = run_helper("--write-reference", path)
            self.assertEqual(rc, 0, out)
            with open(path, "rb") as f:
                data = f.read()
        g = parse(data)
        self.assertEqual(g["version"], 3)
        self.assertEqual(g["alignment"], 32)
        self.assertEqual(set(g["kv"]), set(REF_KV))
        for key, want in REF_KV.items():
            self.assertEqual(g["kv"][key], want, key)
        # the padding before the data section is zeros, and only up to the next multiple of 32
        self.assertEqual(data[g["infos_end"]:g["data_offset"]], bytes(g["data_offset"] - g["infos_end"]))
        self.assertLess(g["data_offset"] - g["infos_end"], 32)
        offset = 0
        self.assertEqual(len(g["tensors"]), len(REF_TENSORS))
        for i, ((name, dims, t, off), (wname, wdims, wt)) in enumerate(zip(g["tensors"], REF_TENSORS)):
            self.assertEqual((name, dims, t), (wname, wdims, wt))
            self.assertEqual(off, offset)
            n = tensor_bytes(t, dims)
            start = g["data_offset"] + off
            self.assertEqual(data[start:start + n], pattern(i, n), name)
            padded = align(n, 32)
            self.assertEqual(data[start + n:start + padded], bytes(padded - n), name)
            offset += padded
        # the file ends with the last tensor's padding, as ggml's and gguf-py's writers do
        self.assertEqual(len(data), g["data_offset"] + offset)


class PythonFilesReadInRig(unittest.TestCase):
    def check(self, version):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, f"python-v{version}.gguf")
            with open(path, "wb") as f:
                f.write(every_type_writer(version).bytes())
            rc, out = run_helper("--check-python", path)
            self.assertEqual(rc, 0, out)
            self.assertIn(f"GGUF v{version}, 20 key/values, 3 tensors", out)

    def test_v3_file_reads_as_written(self):
        self.check(3)

    def test_v2_file_reads_as_written(self):
        self.check(2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        HELPER = os.path.abspath(sys.argv.pop(1))
    unittest.main()
