"""Distill a FLUX teacher (flux-dev, flux-tiny) with SiD on Ray Train + DeepSpeed.

python jobs/distill_flux.py --config configs/flux_dev.yaml --set train.num_workers=8
ray job submit --working-dir . -- python jobs/distill_flux.py --config configs/flux_dev.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(
        main(
            description="Distill a FLUX teacher into a 4-step generator with SiD (Ray Train + DeepSpeed).",
            default_config="configs/flux_dev.yaml",
            families=("flux",),
        )
    )
