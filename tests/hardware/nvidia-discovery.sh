#!/bin/sh
# Discovery on a real NVIDIA box: gpuctl on the real card, an NVML recording and a recorded
# fixture tree, all into $OUT. Expects gpuctl, nvml-record, libnvml-replay.so in $B (default
# .device/bin) and their libraries in .device/lib (built on Debian and carried along).
export LD_LIBRARY_PATH=$PWD/.device/lib
B=${B:-$PWD/.device/bin}
set -x
nvidia-smi --query-gpu=name,pci.bus_id,uuid,memory.total,memory.used,power.draw,power.limit,power.min_limit,power.max_limit,power.default_limit,temperature.gpu,pcie.link.gen.current,pcie.link.width.current,pcie.link.gen.max --format=csv | tee $OUT/nvidia-smi.csv
$B/gpuctl list
$B/gpuctl --json list | tee $OUT/list.json
$B/gpuctl topo
$B/gpuctl doctor; echo "doctor rc=$?"
$B/nvml-record $OUT/nvml.json; echo "record rc=$?"
sh tests/fixtures/record-machine.sh /tmp/h100 && tar czf $OUT/h100-root.tgz -C /tmp/h100 root
$B/gpuctl --root /tmp/h100/root list
RIG_NVML_LIBRARY=$B/libnvml-replay.so RIG_NVML_REPLAY=$OUT/nvml.json $B/gpuctl --root /tmp/h100/root --json list > $OUT/replayed.json
diff $OUT/list.json $OUT/replayed.json && echo "REPLAY MATCHES LIVE"
uname -r; ls /sys/class/drm 2>&1 | head; ls -la /dev/nvidia* | head
