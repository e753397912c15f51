# `source benchmarks/device/collect.sh` ON the GPU machine, after a sweep's processes have ended:
# prints their summary lines (SUMMARY, a grep pattern), then folds every NAME.log into
# $OUT/all.txt and every NAME.json (digits_recipe.py --json) into $OUT/all.json.
grep -h "${SUMMARY:-student\|teacher}" "$OUT"/*.log
cat "$OUT"/*.log | grep -v "Loading\|torchvision\|Writing" > "$OUT/all.txt" && rm "$OUT"/*.log
python3 -c "
import glob, json, os
rows = []
for f in sorted(glob.glob(os.environ['OUT'] + '/*.json')):
    rows += json.load(open(f)); os.remove(f)
json.dump(rows, open(os.environ['OUT'] + '/all.json', 'w'), indent=1)"
