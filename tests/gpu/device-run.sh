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
if [ -x ggml-bin/test-backend-ops ]; then
  echo "== ggml test-backend-ops, same card and sitting"
  LD_LIBRARY_PATH="$PWD/ggml-bin:/usr/local/cuda/lib64:$LD_LIBRARY_PATH" ggml-bin/test-backend-ops perf -o MUL_MAT -b CUDA0 \
    -p "type_a=(f16|q8_0|q4_0|q4_K|q5_K|q6_K),type_b=f32,m=4096,n=(1|8|512),k=14336," 2>&1 | tee "$OUT/ggml_mul_mat.txt" | grep -E "MUL_MAT|Backend"
fi
if command -v ncu >/dev/null && [ -n "${RIG_DEVICE_PROFILE:-}" ]; then
  for t in $RIG_DEVICE_PROFILE; do
    echo "== ncu $t"
    ncu --clock-control none -k regex:matvec -c 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section Occupancy --section LaunchStats $B/bench_gpu_matvec $t 2>&1 | tail -80 > "$OUT/ncu-$t.txt"
    grep -E "Duration|Throughput|Stall|Achieved Occupancy|L1/TEX Hit|Registers" "$OUT/ncu-$t.txt" | head -30
  done
fi
if [ "${RIG_DEVICE_MODELS:-1}" = 1 ]; then
  for t in Q4_K_M Q8_0; do
    $B/rig synth --shape llama3-8b --type $t --seed 1 -o /tmp/l8b-$t.gguf 2>&1 | tail -1
    echo "== rig bench llama3-8b $t"
    $B/rig bench -m /tmp/l8b-$t.gguf -p 512 -n 128 -r 3 -B 1,2,4,8,16 2>&1 | tee "$OUT/bench-l8b-$t.txt"
    echo "== where the time goes (RIG_GPU_PROFILE=1: kernel time per op, no graphs), tg and pp512"
    RIG_GPU_PROFILE=1 $B/rig bench -m /tmp/l8b-$t.gguf -p 0 -n 32 -r 1 2>&1 | grep -A30 "op profile" | tee "$OUT/profile-tg-$t.txt"
    RIG_GPU_PROFILE=1 $B/rig bench -m /tmp/l8b-$t.gguf -p 512 -n 0 -r 1 2>&1 | grep -A30 "op profile" | tee "$OUT/profile-pp-$t.txt"
  done
  echo "== rig bench llama3-8b Q4_K_M, kernels launched one by one (RIG_GPU_GRAPHS=0)"
  RIG_GPU_GRAPHS=0 $B/rig bench -m /tmp/l8b-Q4_K_M.gguf -p 512 -n 128 -r 3 2>&1 | tee "$OUT/bench-l8b-Q4_K_M-nographs.txt"
fi
