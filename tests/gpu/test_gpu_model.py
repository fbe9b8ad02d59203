"""The whole model on the GPU against the CPU backend: logits of synth models of every weight type
(rig logits with and without --cpu), and greedy text (rig run --temp 0). Skipped, saying so, where
rig finds no GPU.

    RIG=build/runtime/rig python3 tests/gpu/test_gpu_model.py
"""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

RIG = os.environ.get("RIG", "build/runtime/rig")
TOKENS = "1,72,101,108,259,111,33,10,200,17,3,99"
# A prompt long enough for the matrix-matrix (tile) kernels of the quantized types (24+ tokens a step)
LONG_TOKENS = ",".join(str((i * 37 + 11) % 250) for i in range(40))

# Both backends take float32 activations for float weights (only summation order separates
# them, < 1e-4) and 8-bit activations for quantized weights: the same Q8_0 rounding for Q8_0 and
# Q4_0 (agreement to float rounding), while for the K types the CPU rounds to its Q8_K and the
# GPU to Q8_0's scale per 32 — each about 0.7% from float64 (tests/integration/test_runtime.py),
# so about 1% from each other; the bound is the CPU's own, 2%.
FLOAT_TYPES = ["F32", "F16", "BF16"]
QUANT_TYPES = ["Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"]


def rig(*args, check=True, env=None):
    r = subprocess.run([RIG, *args], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"rig {' '.join(args)}: rc {r.returncode}\n{r.stderr}")
    return r


def have_gpu():
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "m.gguf")
        rig("synth", "--shape", "tiny-llama", "--type", "F32", "-o", model)
        r = rig("logits", "-m", model, "--tokens", "1", "--out", os.path.join(d, "l.f32"))
        return "running on the CPU" not in r.stderr


class GpuMatchesCpu(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def logits(self, model, *extra, env=None, tokens=TOKENS):
        out = os.path.join(self.dir.name, "l.f32")
        rig("logits", "-m", model, "--tokens", tokens, "--out", out, *extra, env=env)
        return np.fromfile(out, dtype="<f4").reshape(len(tokens.split(",")), -1).astype(np.float64)

    @staticmethod
    def max_relative_error(got, want):
        return max(np.linalg.norm(got[i] - want[i]) / np.linalg.norm(want[i]) for i in range(len(want)))

    def check(self, shape, wtype, kv, bound):
        model = os.path.join(self.dir.name, f"{shape}-{wtype}.gguf")
        if not os.path.exists(model):
            rig("synth", "--shape", shape, "--type", wtype, "--seed", "3", "-o", model)
        gpu = self.logits(model, "--kv", kv)
        cpu = self.logits(model, "--kv", kv, "--cpu")
        self.assertTrue(np.isfinite(gpu).all(), f"{shape} {wtype}: non-finite GPU logits")
        errors = [np.linalg.norm(gpu[i] - cpu[i]) / np.linalg.norm(cpu[i]) for i in range(len(cpu))]
        print(f"{shape:10} {wtype:7} kv {kv:4}: max relative error GPU vs CPU {max(errors):.2e} (bound {bound:g})")
        self.assertLess(max(errors), bound, f"{shape} {wtype} kv {kv}: {errors}")

    def test_float_weights_match_cpu(self):
        for shape in ("tiny-llama", "tiny-qwen2"):
            for wtype in FLOAT_TYPES:
                with self.subTest(shape=shape, type=wtype):
                    self.check(shape, wtype, "f32", 1e-4)

    def test_quantized_weights_match_cpu(self):
        for shape in ("tiny-llama", "tiny-qwen2"):
            for wtype in QUANT_TYPES:
                with self.subTest(shape=shape, type=wtype):
                    self.check(shape, wtype, "f32", 2e-2)

    def test_f16_and_q8_0_kv_cache_match_cpu(self):
        for kv, bound in (("f16", 1e-3), ("q8_0", 2e-2)):
            with self.subTest(kv=kv):
                self.check("tiny-llama", "F16", kv, bound)

    def test_graph_replay_matches_plain_launches(self):
        # A step's kernels run as one captured graph, replayed at every later step of the same
        # size (-b 3: four steps of 3 tokens); RIG_GPU_GRAPHS=0 launches them one by one. The
        # same kernels: the same bits.
        model = os.path.join(self.dir.name, "graphs.gguf")
        rig("synth", "--shape", "tiny-llama", "--type", "Q4_K_M", "--seed", "5", "-o", model)
        graphs = self.logits(model, "--kv", "q8_0", "-b", "3")
        plain = self.logits(model, "--kv", "q8_0", "-b", "3", env={"RIG_GPU_GRAPHS": "0"})
        self.assertTrue(np.isfinite(graphs).all())
        self.assertTrue(np.array_equal(graphs, plain), f"max difference {np.abs(graphs - plain).max():g}")

    def test_prompt_steps_match_token_by_token_and_cpu(self):
        # 40 tokens in one step take the matrix-matrix kernels (tiles for the quantized types),
        # token by token the matrix-vector ones: the same products, their float sums in another
        # order (~1e-7). For the quantized types the next product quantizes those outputs to 8
        # bits again, and now and then an activation within 1e-7 of a rounding boundary takes
        # the next level in one of the two (~3e-3 in the logits of that token and some after
        # it). So: float weights within 1e-5 everywhere; quantized ones within 1e-5 at most
        # positions (a wrong kernel is wrong at every one) and within the CPU's bound at all.
        for wtype in ("F16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K", "Q6_K"):
            with self.subTest(type=wtype):
                model = os.path.join(self.dir.name, f"long-{wtype}.gguf")
                rig("synth", "--shape", "tiny-llama", "--type", wtype, "--seed", "4", "-o", model)
                step = self.logits(model, "--kv", "f32", tokens=LONG_TOKENS)
                alone = self.logits(model, "--kv", "f32", "-b", "1", tokens=LONG_TOKENS)
                cpu = self.logits(model, "--kv", "f32", "--cpu", tokens=LONG_TOKENS)
                self.assertTrue(np.isfinite(step).all())
                errors = [np.linalg.norm(step[i] - alone[i]) / np.linalg.norm(alone[i]) for i in range(len(alone))]
                close = sum(e < 1e-5 for e in errors)
                e_cpu = self.max_relative_error(step, cpu)
                print(f"{wtype:7} 40 tokens a step: vs token by token max {max(errors):.2e}, {close}/40 within 1e-5; "
                      f"vs CPU {e_cpu:.2e}")
                if wtype == "F16":
                    self.assertLess(max(errors), 1e-5)
                else:
                    self.assertGreaterEqual(close, 30, errors)
                    self.assertLess(max(errors), 2e-2)
                self.assertLess(e_cpu, 2e-2)

    def test_greedy_text_is_the_same(self):
        model = os.path.join(self.dir.name, "greedy.gguf")
        rig("synth", "--shape", "tiny-llama", "--type", "F32", "--seed", "9", "-o", model)
        args = ["run", "-m", model, "-p", "GPU", "-n", "32", "--temp", "0", "--kv", "f32"]
        gpu = rig(*args).stdout
        cpu = rig(*args, "--cpu").stdout
        self.assertEqual(gpu, cpu)
        self.assertGreater(len(gpu), len("GPU"))


if __name__ == "__main__":
    if not have_gpu():
        print("skipped: no GPU (rig runs on the CPU here)")
        sys.exit(0)
    unittest.main(verbosity=2)
