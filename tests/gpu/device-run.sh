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
      --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
      $B/bench_gpu_matvec $t 2>&1 | tail -120 > "$OUT/ncu-$t.txt"
    grep -E "Frequency|Duration|Throughput|Stall|Warp Cycles|Eligible|Issued Warp|Achieved Occupancy|L1/TEX Hit|L2 Hit|Registers" \
      "$OUT/ncu-$t.txt" | head -40
  done
fi
if command -v ncu >/dev/null && [ -n "${RIG_DEVICE_NCU_STEP:-}" ]; then
  # the kernels of one decode layer, each timed alone by ncu (cold caches: weights as in decode)
  $B/rig synth --shape llama3-8b --type $RIG_DEVICE_NCU_STEP --seed 1 -o /tmp/l8b-$RIG_DEVICE_NCU_STEP.gguf 2>&1 | tail -1
  echo "== ncu: a decode step's first layer, llama3-8b $RIG_DEVICE_NCU_STEP"
  RIG_GPU_GRAPHS=0 ncu --clock-control none --launch-skip 2 --launch-count 24 --section SpeedOfLight --section Occupancy \
    $B/rig bench -m /tmp/l8b-$RIG_DEVICE_NCU_STEP.gguf -p 0 -n 1 -r 1 > "$OUT/ncu-step.txt" 2>&1
  grep -E "^  [a-z_]+.*\(|SM Frequency|Duration|DRAM Throughput|Achieved Occupancy" "$OUT/ncu-step.txt" | head -150
fi
if [ "${RIG_DEVICE_MODELS:-1}" = 1 ]; then
  for t in Q4_K_M Q8_0; do
    [ -f /tmp/l8b-$t.gguf ] || $B/rig synth --shape llama3-8b --type $t --seed 1 -o /tmp/l8b-$t.gguf 2>&1 | tail -1
    echo "== rig bench llama3-8b $t"
    $B/rig bench -m /tmp/l8b-$t.gguf -p 512 -n 128 -r 3 -B 1,2,4,8,16 2>&1 | tee "$OUT/bench-l8b-$t.txt"
    echo "== where the time goes (RIG_GPU_PROFILE=1: kernel time per op, no graphs), tg and pp512"
    RIG_GPU_PROFILE=1 $B/rig bench -m /tmp/l8b-$t.gguf -p 0 -n 32 -r 1 2>&1 | grep -A30 "op profile" | tee "$OUT/profile-tg-$t.txt"
    RIG_GPU_PROFILE=1 $B/rig bench -m /tmp/l8b-$t.gguf -p 512 -n 0 -r 1 2>&1 | grep -A30 "op profile" | tee "$OUT/profile-pp-$t.txt"
  done
  if [ -x $B/rig_mb2 ]; then
    echo "== the tile kernel at 2 blocks a multiprocessor (-DTILE_MIN_BLOCKS=2): Q4_K tiles, pp512"
    $B/bench_gpu_matvec_mb2 Q4_K 2>&1 | tee "$OUT/bench_matvec_mb2.txt"
    for t in Q4_K_M Q8_0; do
      $B/rig_mb2 bench -m /tmp/l8b-$t.gguf -p 512 -n 0 -r 3 2>&1 | tee "$OUT/bench-l8b-$t-mb2.txt"
    done
  fi
  echo "== rig bench llama3-8b Q4_K_M, batched decode with the tile kernel from 32 columns (RIG_GPU_TILES_MIN_COLS=32)"
  RIG_GPU_TILES_MIN_COLS=32 $B/rig bench -m /tmp/l8b-Q4_K_M.gguf -p 0 -n 128 -r 3 -B 16,24,32 2>&1 | tee "$OUT/bench-l8b-Q4_K_M-tiles32.txt"
  RIG_GPU_TILES_MIN_COLS=16 $B/rig bench -m /tmp/l8b-Q4_K_M.gguf -p 0 -n 128 -r 3 -B 24,32 2>&1 | tee "$OUT/bench-l8b-Q4_K_M-tiles16.txt"
  echo "== rig bench llama3-8b Q4_K_M, kernels launched one by one (RIG_GPU_GRAPHS=0)"
  RIG_GPU_GRAPHS=0 $B/rig bench -m /tmp/l8b-Q4_K_M.gguf -p 512 -n 128 -r 3 2>&1 | tee "$OUT/bench-l8b-Q4_K_M-nographs.txt"
fi
