#!/usr/bin/env bash
# ON the GPU machine (repo root, .whl carried: ../shared/tools/device-wheels, plus peft's wheel):
#   bash benchmarks/device/gpu_scale.sh test        # the full-size GPU test (pytest -m gpu); GPU_TEST_SET="key=value ..." adds settings
#   bash benchmarks/device/gpu_scale.sh bench ARGS  # benchmarks/sid_step.py ARGS
# Logs go to $OUT (the device tool's folder) or ./gpu-logs.
export PYTHONPATH=${PYTHONPATH:-}  # setup.sh appends to it
source benchmarks/device/setup.sh 2>/dev/null || { echo "wheel install failed"; exit 1; }
set -uo pipefail
export RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1 RAY_DEDUP_LOGS=0
logs=${OUT:-gpu-logs}
mkdir -p "$logs"
what=$1
shift
case "$what" in
  test)
    timeout ${TEST_TIMEOUT:-420} python3 -m pytest -p no:cacheprovider -m gpu -x -s tests/train/test_full_size.py "$@" 2>&1 |
      tee "$logs/gpu_test.log" | grep -v -i "warn" | tail -40 ;;
  bench)
    timeout ${BENCH_TIMEOUT:-560} python3 benchmarks/sid_step.py --json "$logs/sid_step.jsonl" "$@" 2>&1 |
      tee -a "$logs/sid_step.log" | grep -E "^(product|baseline|\|)|Error|error" | tail -40 ;;
esac
