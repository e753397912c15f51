"""sid_ray.sid is pure torch: importing it pulls in no ray, deepspeed, diffusers or mlflow."""

import subprocess
import sys


def test_sid_imports_without_heavy_frameworks():
    code = (
        "import sys, sid_ray.sid, sid_ray.sid.torch_network, sid_ray.sid.sampling;"
        "bad = [m for m in ('ray', 'deepspeed', 'diffusers', 'mlflow', 'transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
