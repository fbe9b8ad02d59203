#!/usr/bin/env python3
"""quant_reference.py — an independent dequantizer for the GGUF weight types, written from the
format description with numpy, checking rig_dequantize_row bit for bit.

    quant_reference.py --test-bin build/tests/unit/test_quant   # runs `test_quant --dump TMP`
    quant_reference.py DIR                                      # checks an existing dump

DIR holds <type>.bin (a row of blocks) and <type>.f32 (rig's float32 output for it). Floats are
compared as bits (any nan equals any nan). Every float operation is done in float32 in the
order of ggml's reference dequantizers, so rounding is the same:
  q4_0/q8_0: q * d
  q4_K/q5_K: (d * sc) * q - (dmin * m)
  q6_K:      (d * sc) * (q - 32)
  q8_K:      (d * m_j) * q (rig's own layout: a float scale per block, an integer multiplier
             per 32 elements)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

F32 = np.float32
QK = 256


def f16(raw):
    """uint8 [..., 2] little-endian → float32 via numpy's own half type."""
    return np.ascontiguousarray(raw).view("<f2")[..., 0].astype(F32)


def blocks(raw, size):
    assert raw.size % size == 0, f"{raw.size} bytes is not a whole number of {size}-byte blocks"
    return raw.reshape(-1, size)


def deq_f32(raw):
    return raw.view("<f4").astype(F32)


def deq_f16(raw):
    return raw.view("<f2").astype(F32)


def deq_bf16(raw):
    return (raw.view("<u2").astype(np.uint32) << 16).view(F32)


def deq_q4_0(raw):
    # block: d f16 | 16 bytes; byte j: low nibble = element j, high nibble = element j + 16
    b = blocks(raw, 18)
    d = f16(b[:, 0:2])[:, None]
    qs = b[:, 2:18]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32) - 8
    return (q.astype(F32) * d).reshape(-1)


def deq_q8_0(raw):
    b = blocks(raw, 34)
    d = f16(b[:, 0:2])[:, None]
    q = b[:, 2:34].view(np.int8).astype(F32)
    return (q * d).reshape(-1)


def k_scales_mins(sc):
    """12 bytes → 8 six-bit scales and 8 six-bit mins (sub-blocks of 32).
    bytes 0-3: scale 0-3 in bits 0-5, bits 4-5 of scale 4-7 in bits 6-7
    bytes 4-7: min 0-3 in bits 0-5,   bits 4-5 of min 4-7 in bits 6-7
    bytes 8-11: low 4 bits of scale 4-7 (low nibble), of min 4-7 (high nibble)"""
    sc = sc.astype(np.int32)
    scale = np.empty((sc.shape[0], 8), np.int32)
    mn = np.empty((sc.shape[0], 8), np.int32)
    scale[:, 0:4] = sc[:, 0:4] & 63
    mn[:, 0:4] = sc[:, 4:8] & 63
    scale[:, 4:8] = (sc[:, 8:12] & 15) | ((sc[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)
    return scale, mn


def k_apply(d, dmin, scale, mn, q):
    """q: [nb, 256] levels; sub-block s = element // 32."""
    d1 = d[:, None] * scale.astype(F32)           # [nb, 8] float32
    m1 = dmin[:, None] * mn.astype(F32)
    d1 = np.repeat(d1, 32, axis=1)
    m1 = np.repeat(m1, 32, axis=1)
    return (d1 * q.astype(F32) - m1).reshape(-1)


def nibbles_k(qs):
    """[nb, 128] bytes → [nb, 256]: per 64-chunk c, 32 low nibbles then 32 high nibbles."""
    c = qs.reshape(-1, 4, 32).astype(np.int32)
    return np.concatenate([c & 15, c >> 4], axis=2).reshape(-1, QK)


def deq_q4_K(raw):
    # d f16 | dmin f16 | scales 12 | qs 128
    b = blocks(raw, 144)
    scale, mn = k_scales_mins(b[:, 4:16])
    return k_apply(f16(b[:, 0:2]), f16(b[:, 2:4]), scale, mn, nibbles_k(b[:, 16:144]))


def deq_q5_K(raw):
    # d f16 | dmin f16 | scales 12 | qh 32 | qs 128; element 64c + l: bit 2c of qh[l],
    # element 64c + 32 + l: bit 2c + 1 of qh[l]
    b = blocks(raw, 176)
    scale, mn = k_scales_mins(b[:, 4:16])
    qh = b[:, 16:48].astype(np.int32)
    high = np.concatenate([(qh >> bit) & 1 for bit in range(8)], axis=1)   # [nb, 8*32]
    q = nibbles_k(b[:, 48:176]) + 16 * high
    return k_apply(f16(b[:, 0:2]), f16(b[:, 2:4]), scale, mn, q)


def deq_q6_K(raw):
    # ql 128 | qh 64 | scales int8 16 | d f16. Per half n of 128: element 32g + l (g < 4) has
    # low 4 bits from ql[64n + l + 32*(g % 2)] (low nibble if g < 2), high 2 bits from bits
    # 2g..2g+1 of qh[32n + l]; scale scales[8n + 2g + l // 16].
    b = blocks(raw, 210)
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 64).astype(np.int32)
    qh = b[:, 128:192].reshape(nb, 2, 32).astype(np.int32)
    sc = b[:, 192:208].view(np.int8).astype(F32)
    d = f16(b[:, 208:210])
    q = np.empty((nb, 2, 4, 32), np.int32)
    for g in range(4):
        low = (ql[:, :, 32 * (g % 2):32 * (g % 2) + 32] >> (4 * (g // 2))) & 15
        q[:, :, g, :] = low | (((qh >> (2 * g)) & 3) << 4)
    q = q.reshape(nb, QK) - 32
    ds = d[:, None] * sc                           # [nb, 16] float32, group of 16
    return (np.repeat(ds, 16, axis=1) * q.astype(F32)).reshape(-1)


def deq_q8_K(raw):
    # rig's own activation block (not ggml's): qs int8 256 | bsums int16 16 | m int16 8 (one per
    # 32 elements) | d f32 | 12 bytes of padding
    b = blocks(raw, 320)
    q = b[:, 0:256].view(np.int8).astype(F32)
    m = np.ascontiguousarray(b[:, 288:304]).view("<i2").astype(F32)     # [nb, 8]
    d = np.ascontiguousarray(b[:, 304:308]).view("<f4").astype(F32)     # [nb, 1]
    return (np.repeat(d * m, 32, axis=1) * q).reshape(-1)


DEQUANT = {
    "f32": deq_f32, "f16": deq_f16, "bf16": deq_bf16, "q4_0": deq_q4_0, "q8_0": deq_q8_0,
    "q4_K": deq_q4_K, "q5_K": deq_q5_K, "q6_K": deq_q6_K, "q8_K": deq_q8_K,
}


def check_q8_K(raw):
    """The quantized half of the q8_K dump (the random half is raw bits): bsums are the sums of
    groups of 16; multipliers are in 1..64; the block's largest sub-block has multiplier 64 and
    reaches |q| = 127, and a sub-block with m_j > 1 needed it (max |q| above 127 (m_j - 1) / m_j
    less the rounding): the multiplier is the smallest that holds the sub-block. Returns the
    failures, as text."""
    b = blocks(raw, 320)[raw.size // 320 // 2:]
    q = b[:, 0:256].view(np.int8).astype(np.int32)
    bs = np.ascontiguousarray(b[:, 256:288]).view("<i2").astype(np.int32)
    m = np.ascontiguousarray(b[:, 288:304]).view("<i2").astype(np.int32)
    qmax = np.abs(q).reshape(-1, 8, 32).max(axis=2)
    failures = []
    if not np.array_equal(q.reshape(-1, 16, 16).sum(axis=2), bs):
        failures.append("bsums are not the sums of groups of 16")
    if not ((m >= 1) & (m <= 64)).all():
        failures.append("a multiplier outside 1..64")
    if not ((qmax == 127) & (m == 64)).any(axis=1).all():
        failures.append("a block whose largest sub-block is not at multiplier 64 and |q| = 127")
    need = np.where(m > 1, np.floor(127.0 * (m - 1) / m - 0.5), 0)
    if not (qmax >= need).all():
        failures.append("a sub-block whose multiplier is larger than it needs")
    return failures


def check_dir(d):
    failed = 0
    for name, fn in DEQUANT.items():
        raw = np.fromfile(os.path.join(d, name + ".bin"), np.uint8)
        got = np.fromfile(os.path.join(d, name + ".f32"), "<f4")
        want = fn(raw)
        if want.shape != got.shape:
            print(f"FAIL {name}: {got.size} floats from rig, {want.size} from the reference")
            failed += 1
            continue
        gb, wb = got.view(np.uint32), want.astype(F32).view(np.uint32)
        bad = (gb != wb) & ~(np.isnan(got) & np.isnan(want))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            print(f"FAIL {name}: {int(bad.sum())} of {got.size} differ; first at {i}: "
                  f"rig {got[i]!r} ({gb[i]:#010x}), reference {want[i]!r} ({wb[i]:#010x})")
            failed += 1
        else:
            print(f"ok   {name}: {got.size} values bit-exact")
    for failure in check_q8_K(np.fromfile(os.path.join(d, "q8_K.bin"), np.uint8)):
        print(f"FAIL q8_K: {failure}")
        failed += 1
    return failed


def main(argv):
    if len(argv) == 3 and argv[1] == "--test-bin":
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([argv[2], "--dump", d], check=True)
            return 1 if check_dir(d) else 0
    if len(argv) == 2:
        return 1 if check_dir(argv[1]) else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    with np.errstate(all="ignore"):
        sys.exit(main(sys.argv))
