#!/bin/sh
# On a lent NVIDIA machine: builds of rig side by side in one sitting (the spread between
# machines and sittings is a few percent, more than many changes are worth). For each model,
# each build's tg128 and pp512, the builds taken in turn, twice over; then each build's op tests
# where a test binary is named. Output under $OUT: log.txt.
#   RIG_DEVICE_VARIANTS="dev-bin/rig dev-variants/rig-prefetch ..."   the builds (rig binaries); an
#        entry VAR=VALUE@BINARY runs the binary with that environment variable set
#   RIG_DEVICE_VARIANT_TESTS="dev-variants/test_gpu_ops_prefetch ..."  op-test binaries to run too
#   RIG_DEVICE_TYPES="Q4_K_M Q8_0"                                      the synth llama3-8b models
set -u
export LD_LIBRARY_PATH="$PWD/dev-bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > "$OUT/log.txt" 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv,noheader
variants=${RIG_DEVICE_VARIANTS:-dev-bin/rig}
for t in ${RIG_DEVICE_TYPES:-Q4_K_M Q8_0}; do
  dev-bin/rig synth --shape llama3-8b --type "$t" --seed 1 -o "/tmp/l8b-$t.gguf" > /dev/null 2>&1
  for round in 1 2; do
    for v in $variants; do
      bin=${v#*@}
      setting=
      [ "$bin" != "$v" ] && setting=${v%%@*}
      printf '%s %s round %s: ' "$t" "$v" "$round"
      env $setting "$bin" bench -m "/tmp/l8b-$t.gguf" -p 512 -n 128 -r 2 2>&1 | grep -E 'pp512|tg128 \|' |
        awk -F'|' '{printf "%s %s  ", $7, $8}'
      echo
    done
  done
done
for tbin in ${RIG_DEVICE_VARIANT_TESTS:-}; do
  echo "== $tbin"; "$tbin" 2>&1 | grep -E "FAIL|passed" | tail -20
done
