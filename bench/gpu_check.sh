#!/usr/bin/env bash
# The GPU check: training throughput and MFU of the canonical recipe on CUDA, in
# bf16, for proxy and karpa-1. Runs on a host with torch 2.11.0 in python3 (its
# libtorch and CUDA libraries are the ones karpa-train links) over the folder
# `cargo xtask gpu-pack` fills. Writes calibration.json and one JSON per config
# to $OUT (default <pack>/out) and prints a table.
#
#   bash bench/gpu_check.sh .gpu                          # on the CUDA host
#   DEVICE=cpu CONFIGS="tiny:20" PYTHON=.venv/bin/python bash bench/gpu_check.sh .gpu   # a dry run here
#
# MFU = 6 · params · tokens/s over the bf16 matmul peak that calibrate measures on
# this device (attention's own FLOPs are left out, as usual).
set -euo pipefail
pack=${1:?usage: gpu_check.sh <folder from cargo xtask gpu-pack>}
device=${DEVICE:-cuda}
configs=${CONFIGS:-"proxy:300 karpa-1:60"}
out=${OUT:-$pack/out}
mkdir -p "$out"
python=${PYTHON:-python3}
torch=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
export LD_LIBRARY_PATH="$torch/lib:$torch/../nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
bin=$pack/karpa-train
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
fi
"$bin" calibrate --device "$device" --out "$out/calibration.json" >/dev/null
for spec in $configs; do
  cfg=${spec%%:*}
  steps=${spec##*:}
  "$bin" bench --config "$cfg" --device "$device" --data "$pack/data/$cfg/public" --allow-unpinned-data \
    --steps "$steps" >"$out/bench-$cfg.json"
done
"$python" - "$out" $configs <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
cal = json.loads((out / "calibration.json").read_text())
peak = cal["matmul_peak_tflops"] * 1e12
d = cal["device"]
print(f"{d['name']} ({d['kind']}, torch {d['torch_version']}), measured matmul peak {cal['matmul_peak_tflops']:.1f} TFLOP/s")
print(f"{'config':<8} {'params':>12} {'steps':>6} {'tokens/s':>12} {'ms/step':>10} {'MFU':>7} {'loss':>8}")
for spec in sys.argv[2:]:
    b = json.loads((out / f"bench-{spec.split(':')[0]}.json").read_text())
    mfu = 6 * b["params"] * b["tokens_per_s"] / peak
    print(f"{b['config']:<8} {b['params']:>12,} {b['steps']:>6} {b['tokens_per_s']:>12,.0f} "
          f"{b['ms_per_step']:>10.1f} {mfu:>7.1%} {b['final_loss']:>8.4f}")
PY
