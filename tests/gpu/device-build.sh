#!/bin/sh
# Builds what tests/gpu/device-run.sh runs (sm_90 only, Release) into dev-bin/, with the shared
# libraries a bare CUDA image lacks. Run on Debian 12 after scripts/bootstrap.
set -eu
cd "$(dirname "$0")/../.."
cmake -S . -B build-sm90 -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DRIG_HIP=OFF \
      -DPython3_EXECUTABLE=/usr/bin/python3 >/dev/null
cmake --build build-sm90 -j"$(nproc)" --target rig-cli test_gpu_ops_cuda bench_gpu_matvec
rm -rf dev-bin && mkdir -p dev-bin/lib
cp build-sm90/runtime/rig build-sm90/tests/gpu/test_gpu_ops_cuda build-sm90/tests/gpu/bench_gpu_matvec dev-bin/
for lib in libpcre2-8.so.0 libutf8proc.so.2 libjson-c.so.5; do
        cp -L "/lib/x86_64-linux-gnu/$lib" dev-bin/lib/
done
grep -qx '/dev-bin/' .git/info/exclude 2>/dev/null || echo '/dev-bin/' >> .git/info/exclude
