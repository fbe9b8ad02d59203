#!/bin/sh
# On a lent NVIDIA machine: the op tests, the whole-model check and the benchmarks, from binaries
# built on Debian 12 with `tests/gpu/device-build.sh` and carried in dev-bin/ (the machine has no
# Debian -dev packages to build them). Everything goes under $OUT in few files (the lending tool
# brings back at most 8): log.txt (what this prints), ops.txt (every op test), ncu.txt.
#   RIG_DEVICE_PROFILE="Q4_K ..."  ncu's stall sections of the matvec kernel of those types
#   RIG_DEVICE_PROFILE_KERNEL=matvec_mma  which kernel that is (a regex; default the one-column
#                                  matvec_int8; matvec_mma: the tensor-core one, at 8 columns)
#   RIG_DEVICE_NCU_STEP=Q4_K_M     ncu's time of each kernel of a decode step of llama3-8b
#   RIG_DEVICE_MODELS=0            no whole-model benchmarks
#   RIG_DEVICE_MATVEC=0            no matvec benchmark (nor ggml's)
#   RIG_DEVICE_MV="2,1,2,0 ..."    tg128 of both models with each of these matvec shapes (RIG_GPU_MV)
set -u
export LD_LIBRARY_PATH="$PWD/dev-bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
B=dev-bin
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > "$OUT/log.txt" 2>&1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv
echo "== op tests"; $B/test_gpu_ops_cuda > "$OUT/ops.txt" 2>&1; grep -E "FAIL|passed" "$OUT/ops.txt" | tail -20
echo "== whole model"; RIG=$B/rig python3 tests/gpu/test_gpu_model.py 2>&1 | tail -30
[ "${RIG_DEVICE_MATVEC:-1}" = 1 ] && { echo "== matvec bench"; $B/bench_gpu_matvec 2>&1; }
if [ "${RIG_DEVICE_MATVEC:-1}" = 1 ] && [ -x ggml-bin/test-backend-ops ]; then
  echo "== ggml test-backend-ops, same card and sitting"
  LD_LIBRARY_PATH="$PWD/ggml-bin:/usr/local/cuda/lib64:$LD_LIBRARY_PATH" ggml-bin/test-backend-ops perf -o MUL_MAT -b CUDA0 \
    -p "type_a=(f16|q8_0|q4_0|q4_K|q5_K|q6_K),type_b=f32,m=4096,n=(1|8|512),k=14336," 2>&1 | grep -E "MUL_MAT|Backend"
fi
for t in ${RIG_DEVICE_PROFILE:-}; do
  echo "== ncu $t"
  ncu --clock-control none -k "regex:${RIG_DEVICE_PROFILE_KERNEL:-matvec_int8}" -c 1 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    $B/bench_gpu_matvec $t >> "$OUT/ncu.txt" 2>&1
done
[ -n "${RIG_DEVICE_PROFILE:-}" ] && grep -E "Duration|Throughput|Stall|Warp Cycles|Eligible|Issued Warp|Achieved Occupancy|Registers" "$OUT/ncu.txt" | head -60
if [ "${RIG_DEVICE_MODELS:-1}" = 1 ]; then
  for t in Q4_K_M Q8_0; do
    $B/rig synth --shape llama3-8b --type $t --seed 1 -o /tmp/l8b-$t.gguf 2>&1 | tail -1
    echo "== rig bench llama3-8b $t"
    $B/rig bench -m /tmp/l8b-$t.gguf -p 512 -n 128 -r 3 -B 1,2,4,8,16 2>&1
    echo "== rig bench llama3-8b $t, kernels launched after the one before has ended (RIG_GPU_PDL=0)"
    RIG_GPU_PDL=0 $B/rig bench -m /tmp/l8b-$t.gguf -p 0 -n 128 -r 3 2>&1
  done
  for mv in ${RIG_DEVICE_MV:-}; do
    for t in Q4_K_M Q8_0; do
      echo "== RIG_GPU_MV=$mv $t"; RIG_GPU_MV=$mv $B/rig bench -m /tmp/l8b-$t.gguf -p 0 -n 128 -r 2 2>&1 | grep "tg128 |"
    done
  done
  echo "== where the time goes (RIG_GPU_PROFILE=1: kernel time per op, no graphs), tg Q4_K_M"
  RIG_GPU_PROFILE=1 $B/rig bench -m /tmp/l8b-Q4_K_M.gguf -p 0 -n 32 -r 1 2>&1 | grep -A40 "op profile"
fi
if [ -n "${RIG_DEVICE_NCU_STEP:-}" ]; then
  t=$RIG_DEVICE_NCU_STEP
  [ -f /tmp/l8b-$t.gguf ] || $B/rig synth --shape llama3-8b --type $t --seed 1 -o /tmp/l8b-$t.gguf 2>&1 | tail -1
  echo "== ncu: the kernels of a decode step's first layers, llama3-8b $t (each alone, caches flushed)"
  RIG_GPU_GRAPHS=0 ncu --clock-control none --launch-skip 2 --launch-count 40 --section SpeedOfLight --section Occupancy \
    --section LaunchStats $B/rig bench -m /tmp/l8b-$t.gguf -p 0 -n 1 -r 1 >> "$OUT/ncu.txt" 2>&1
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Achieved Occupancy|Registers Per" "$OUT/ncu.txt" | tail -200
fi
