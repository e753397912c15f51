"""sklearn's digits as webdataset shards: a real image-text dataset for data-aided runs and tests.

Each sample is `<key>.png` (the 16x16 world image of `sid_ray.toys.digits_data`, 8-bit grey)
and `<key>.txt` (its prompt, "a handwritten seven"), so `encode_pairs` on these shards gives the
digits teacher's own training distribution. Bytes are deterministic (PNG without timestamps, tar
members with mtime 0), so the latent cache's key is stable across rebuilds of the same shards.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

SHARD_PATTERN = "digits-{:06d}.tar"
_MANIFEST = "digits_shards.json"


def _png(grey: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")  # 2-D uint8: 8-bit grey (mode L)
    return buf.getvalue()


def write_digits_shards(folder: str | Path, num_shards: int = 4, limit: int | None = None) -> list[Path]:
    """Write the digits (the first `limit` of them, in sklearn's order) as `num_shards` tar shards.

    Samples are split into contiguous runs, shard i holding the i-th; each file is written under
    a temporary name and renamed, and stale `digits-*.tar` of another split are removed.
    """
    import webdataset

    from sid_ray.toys.digits_data import digit_prompt, load_digit_images

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = load_digit_images()
    count = len(labels) if limit is None else min(limit, len(labels))
    grey = np.round(images[:count, 0].numpy() * 255).astype(np.uint8)
    chunks = np.array_split(np.arange(count), num_shards)
    paths = []
    for shard, rows in enumerate(chunks):
        path = folder / SHARD_PATTERN.format(shard)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as stream, webdataset.TarWriter(stream, encoder=False, mtime=0) as tar:
            for i in rows.tolist():
                tar.write(
                    {
                        "__key__": f"{i:06d}",
                        "png": _png(grey[i]),
                        "txt": digit_prompt(int(labels[i])).encode(),
                    }
                )
        tmp.rename(path)
        paths.append(path)
    for stale in set(folder.glob("digits-*.tar")) - set(paths):
        stale.unlink()
    manifest = {
        "num_shards": num_shards,
        "limit": limit,
        "num_samples": count,
        "files": [p.name for p in paths],
    }
    (folder / _MANIFEST).write_text(json.dumps(manifest))
    return paths


def ensure_digits_shards(folder: str | Path, num_shards: int = 4, limit: int | None = None) -> list[Path]:
    """`write_digits_shards` unless the folder already holds exactly these shards (by its manifest)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    paths = [folder / name for name in manifest.get("files", [])]
    wanted = manifest.get("num_shards") == num_shards and manifest.get("limit") == limit
    if wanted and len(paths) == num_shards and all(p.is_file() for p in paths):
        return paths
    return write_digits_shards(folder, num_shards, limit)
