#!/usr/bin/env bash
# Run HERE (not on the GPU machine), from the repo root, before a GPU sweep: builds .whl/ (the
# wheels the GPU image lacks: ../shared/tools/device-wheels) and adds what the digits benchmarks
# need there: the sklearn digits as .npz (the image has no scikit-learn), pytest, and this
# machine's cached digits classifier (so FIDs are comparable with CPU runs). Carry ".whl".
set -euo pipefail
mkdir -p .git/info
PATH="$PWD/.venv/bin:$PATH" ../shared/tools/device-wheels
.venv/bin/python -m pip download -q --no-deps -d .whl pytest==9.2.0 pluggy iniconfig
# the image's peft differs from the pin (../shared/GPU.md)
.venv/bin/python -m pip download -q --no-deps -d .whl peft==0.21.2
.venv/bin/python -c "
import numpy as np; from sklearn.datasets import load_digits
d = load_digits(); np.savez_compressed('.whl/digits.npz', images=d.images, target=d.target)"
.venv/bin/python -c "from sid_ray.eval.digits_classifier import load_digits_classifier; load_digits_classifier()"
mkdir -p .whl/cache && cp "${SID_RAY_CACHE:-$HOME/.cache/sid_ray}"/digits_classifier_*.safetensors .whl/cache/
du -sh .whl
