#!/usr/bin/env bash
# ON the GPU machine: one benchmarks/digits_recipe.py process per line of a variants file, all at
# once (the tiny teacher leaves the GPU and the 16 cores mostly idle with one run), e.g.
#   run(command="LIMIT=520 bash benchmarks/device/parallel_sweep.sh benchmarks/device/variants/cosine.txt", carry=[".whl"])
# A line: DEVICE NAME OVERRIDES... (DEVICE cuda or cpu). The first line also scores the teacher.
# Env: LIMIT (seconds per process), EVERY (kimg between curve points), SAMPLES (default 2000).
source benchmarks/device/setup.sh || exit 1
i=0
while read -r dev name rest; do
  [ -z "$dev" ] || [ "${dev:0:1}" = "#" ] && continue
  teacher=--no-teacher; [ $i -eq 0 ] && teacher=
  timeout "${LIMIT:-520}" python3 benchmarks/digits_recipe.py --device "$dev" --samples "${SAMPLES:-2000}" \
    --eval-every-kimg "${EVERY:-6.4}" $teacher --json "$OUT/$name.json" --variant "$name" $rest > "$OUT/$name.log" 2>&1 &
  i=$((i + 1))
done < "$1"
wait
source benchmarks/device/collect.sh
