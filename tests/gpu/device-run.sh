#!/bin/sh
# On a lent NVIDIA machine: the op tests, the whole-model check and the benchmarks, from binaries
# built on Debian 12 with `tests/gpu/device-build.sh` and carried in dev-bin/ (the machine has no
# Debian -dev packages to build them). Writes everything under $OUT.
set -u
export LD_LIBRARY_PATH="$PWD/dev-bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B=dev-bin
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv | tee "$OUT/gpu.txt"
echo "== op tests"; $B/test_gpu_ops_cuda 2>&1 | tee "$OUT/ops.txt" | tail -40
echo "== whole model"; RIG=$B/rig python3 tests/gpu/test_gpu_model.py 2>&1 | tee "$OUT/model.txt" | tail -30
echo "== matvec bench"; $B/bench_gpu_matvec 2>&1 | tee "$OUT/bench_matvec.txt"
if [ "${RIG_DEVICE_MODELS:-1}" = 1 ]; then
  for t in Q4_K_M Q8_0; do
    $B/rig synth --shape llama3-8b --type $t --seed 1 -o /tmp/l8b-$t.gguf 2>&1 | tail -1
    echo "== rig bench llama3-8b $t"
    $B/rig bench -m /tmp/l8b-$t.gguf -p 512 -n 128 -r 3 2>&1 | tee "$OUT/bench-l8b-$t.txt"
  done
fi
