# `source benchmarks/device/setup.sh` ON the GPU machine (repo root, .whl carried): installs the
# wheels, a stand-in for sklearn.datasets.load_digits over the same data, and the environment.
# once per set of wheels: scripts that run others (samplers_and_plateau.sh) source this again, and a
# second install into /tmp/site while the first one's processes import from it is a race
stamp=$(ls -l .whl/*.whl | md5sum)
if [ "$(cat /tmp/site/.wheels 2>/dev/null)" != "$stamp" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
  echo "$stamp" > /tmp/site/.wheels
fi
export PYTHONPATH=/tmp/site:$PWD:$PYTHONPATH TORCH_CUDA_ARCH_LIST=9.0 SID_RAY_CACHE=$PWD/.whl/cache OMP_NUM_THREADS=1
if ! python3 -c "import sklearn" 2>/dev/null; then
  mkdir -p /tmp/site/sklearn/datasets && : > /tmp/site/sklearn/__init__.py
  cp .whl/digits.npz /tmp/site/sklearn/datasets/
  cat > /tmp/site/sklearn/datasets/__init__.py <<'PY'
import os, types, numpy as np
def load_digits():
    d = np.load(os.path.join(os.path.dirname(__file__), "digits.npz"))
    return types.SimpleNamespace(images=d["images"], target=d["target"], data=d["images"].reshape(len(d["images"]), -1))
PY
fi
