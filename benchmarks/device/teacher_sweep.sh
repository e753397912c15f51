#!/usr/bin/env bash
# ON the GPU machine: does a bigger or longer-trained digits teacher give a better student?
#   run(command="LIMIT=480 bash benchmarks/device/teacher_sweep.sh benchmarks/device/variants/teachers1.txt", carry=[".whl"])
# A line: TEACHER RECIPE VARIANT SID_OVERRIDES... where RECIPE is comma-separated recipe fields
# (scripts/train_digits_teacher.py --set; "-" = the default recipe). Every distinct TEACHER is
# built once on cuda into .whl-cache/teachers/ (kept while the machine stays warm), all at once;
# then every VARIANT distils its teacher with benchmarks/digits_recipe.py, all at once, and scores
# the teacher too (32 and 4 Euler steps). Env: LIMIT (seconds per distillation), EVERY, SAMPLES.
source benchmarks/device/setup.sh || exit 1
mkdir -p .whl-cache/teachers
declare -A built
while read -r teacher recipe _; do
  [ -z "$teacher" ] || [ "${teacher:0:1}" = "#" ] || [ -n "${built[$teacher]}" ] && continue
  built[$teacher]=1
  [ -f ".whl-cache/teachers/$teacher/model_index.json" ] && continue
  sets=(); [ "$recipe" != "-" ] && for s in ${recipe//,/ }; do sets+=(--set "$s"); done
  python3 scripts/train_digits_teacher.py --device cuda --no-eval --folder ".whl-cache/teachers/$teacher" \
    "${sets[@]}" > "$OUT/teacher-$teacher.log" 2>&1 &
done < "$1"
wait
grep -h "saved to" "$OUT"/teacher-*.log 2>/dev/null | sed "s/recipe.*vae_recon/vae_recon/"; ls .whl-cache/teachers
while read -r teacher recipe name rest; do
  [ -z "$teacher" ] || [ "${teacher:0:1}" = "#" ] && continue
  timeout "${LIMIT:-480}" python3 benchmarks/digits_recipe.py --device cuda --samples "${SAMPLES:-2000}" \
    --eval-every-kimg "${EVERY:-6.4}" --json "$OUT/$name.json" --variant "$name" \
    "model.path=$PWD/.whl-cache/teachers/$teacher" $rest > "$OUT/$name.log" 2>&1 &
done < "$1"
wait
SUMMARY="student\|teacher guidance" source benchmarks/device/collect.sh
