"""Distill an SD3 / SD3.5 teacher (sd35-large, sd35-medium, sd3-medium, sd3-tiny) with SiD.

python jobs/distill_sd35.py --config configs/sd35_large.yaml --set train.num_workers=8
ray job submit --working-dir . -- python jobs/distill_sd35.py --config configs/sd35_large.yaml
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(
        main(
            description="Distill an SD3/SD3.5 teacher into a 4-step generator with SiD (Ray Train + DeepSpeed).",
            default_config="configs/sd35_large.yaml",
            families=("sd3",),
        )
    )
