"""Write sklearn's digits as webdataset shards (png + txt), the image data of data-aided digits runs.

python scripts/make_digits_shards.py data/digits-shards --num-shards 4
# then: data.images=data/digits-shards (with model.name=digits-flux, model.resolution=16)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sid_ray.toys.digits_shards import write_digits_shards  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", help="folder the digits-NNNNNN.tar shards are written to")
    parser.add_argument("--num-shards", type=int, default=4, help="number of tar shards (default 4)")
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first LIMIT digits (default all 1,797)"
    )
    args = parser.parse_args(argv)
    paths = write_digits_shards(args.output, args.num_shards, args.limit)
    print(f"wrote {len(paths)} shard(s) to {args.output}: {', '.join(p.name for p in paths)}")


if __name__ == "__main__":
    main()
