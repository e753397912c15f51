#!/usr/bin/env bash
# ON the GPU machine: the shipped teacher's Euler and ancestral samplers against their step count
# (benchmarks/digits_teacher_samplers.py), beside the plateau sweep on better-trained teachers.
#   run(command="LIMIT=430 EVERY=12.8 bash benchmarks/device/samplers_and_plateau.sh", carry=[".whl"])
source benchmarks/device/setup.sh || exit 1
python3 benchmarks/digits_teacher_samplers.py --device cuda \
  --steps 32 128 --ancestral 4 8 16 32 64 128 256 512 > "$OUT/samplers.txt" 2>&1 &
bash benchmarks/device/teacher_sweep.sh benchmarks/device/variants/plateau_teachers.txt
wait
tail -14 "$OUT/samplers.txt"
