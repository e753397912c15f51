"""Real (latent, caption) pairs for the data-aided variant (SiDA), encoded once and cached on disk.

Training on raw images would run the teacher's VAE encoder on every step of every worker; the
reference implementations encode the dataset once instead. `encode_pairs` reads the webdataset
shards of `data.images` with Ray Data, VAE-encodes them on an actor pool (each actor builds the
teacher adapter once) and writes a table folder:

    latents.npy    (N, *latent_shape) float32, in the velocity's layout, memory-mapped by readers
    captions.json  the N captions, same order
    meta.json      shards, model, counts and the reasons samples were skipped

The folder's name is a hash of the shards (path, size, mtime) and of what changes the latents
(teacher, resolution, keys), so an edited shard or another teacher gets a new table and a repeat
run loads the old one without starting any Ray work. Rows keep the shards' order (sorted files,
samples in tar order), so the table, and the stream `sid_ray.data.pair_stream` serves from it,
is the same on every machine. On a multi-node cluster, `data.images` and the cache folder must be
paths every node can read (shared storage): the read tasks and the training workers open them.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import io
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sid_ray.config.paths import cache_dir
from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.data.storage import filesystem_from_uri, ray_read_args
from sid_ray.data.tar_samples import tar_samples

TABLE_VERSION = 2  # bump when the table's layout or the decoding changes (2: our tar reader)
_MAX_LOGGED_SKIPS = 20  # skipped sample keys kept in meta.json (the counts are always complete)


def shard_urls(source: str) -> list[str]:
    """The shard files of `data.images`: a folder (its *.tar, sorted), a glob, or a brace pattern.

    Remote URLs (s3://...) are brace-expanded only; local patterns must match existing files.
    """
    import braceexpand

    if not source:
        raise ConfigError("data.images: empty; give a folder of .tar shards, a glob or a brace pattern")
    if "://" in source:
        return list(braceexpand.braceexpand(source))
    path = Path(source).expanduser()
    if path.is_dir():
        urls = sorted(str(p) for p in path.glob("*.tar"))
    else:
        urls = []
        for pattern in braceexpand.braceexpand(str(path)):
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            urls += [m for m in matches if Path(m).is_file()]
    if not urls:
        raise ConfigError(
            f"data.images: no webdataset shards found at {source} "
            "(expected a folder of .tar files, a glob or a brace pattern like shards/{000000..000009}.tar)"
        )
    return [str(Path(u).resolve()) for u in urls]


@dataclass
class PairTable:
    """An encoded table: row i is (latents[i], captions[i]); `latents` is a read-only memory map."""

    folder: Path
    latents: np.ndarray
    captions: list[str]
    num_skipped: int
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captions)


def load_pair_table(folder: str | Path) -> PairTable:
    """Open a table folder written by `encode_pairs` (latents memory-mapped, not read)."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    captions = json.loads((folder / "captions.json").read_text())
    latents = np.load(folder / "latents.npy", mmap_mode="r")
    return PairTable(folder, latents, captions, int(meta["num_skipped"]), meta)


def _split_keys(keys: str) -> list[str]:
    return [k.strip().lstrip(".") for k in keys.split(";") if k.strip()]


def cache_key(config: RunConfig, urls: list[str]) -> str:
    """sha256 of the shards' (path, size, mtime) and of every setting that changes the latents."""
    shards = []
    for url in urls:
        if "://" in url:
            fs, path = filesystem_from_uri(url)
            info = fs.get_file_info(path)
            shards.append([url, info.size, info.mtime_ns])
        else:
            stat = os.stat(url)
            shards.append([url, stat.st_size, stat.st_mtime_ns])
    model = config.model
    payload = {
        "version": TABLE_VERSION,
        "shards": shards,
        "model": [model.name, model.path, model.dtype, model.resolution],
        "image_keys": _split_keys(config.data.image_keys),
        "caption_keys": _split_keys(config.data.caption_keys),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_root(config: RunConfig) -> Path:
    if config.data.latent_cache:
        return Path(config.data.latent_cache).expanduser().resolve()
    return (cache_dir() / "latents").resolve()


def pair_cache_folder(config: RunConfig, urls: list[str] | None = None) -> Path:
    """Where the table of `config.data.images` (its shards `urls`, found when not given) lives,
    whether or not it was built yet."""
    urls = shard_urls(config.data.images) if urls is None else urls
    return cache_root(config) / f"{config.model.name}-{cache_key(config, urls)[:20]}"


class _SampleFields:
    """read_webdataset decoder: a raw sample -> fixed columns, the image decoded to uint8 (R, R, 3).

    Runs inside the read tasks. Every sample gets the same columns (a zero image and a `problem`
    text when it cannot be used), so blocks never differ in schema and a bad sample is counted by
    the driver instead of failing the read.
    """

    def __init__(self, image_keys: list[str], caption_keys: list[str], resolution: int):
        self.image_keys, self.caption_keys, self.resolution = image_keys, caption_keys, resolution

    def __call__(self, sample: dict) -> dict:
        r = self.resolution
        out = {"key": str(sample.get("__key__")), "url": str(sample.get("__url__")), "caption": ""}
        image_key = next((k for k in self.image_keys if sample.get(k) is not None), None)
        caption_key = next((k for k in self.caption_keys if sample.get(k) is not None), None)
        image, problem = np.zeros((r, r, 3), np.uint8), sample.get("__problem__", "")
        if problem:
            pass  # a broken stretch of the shard (sid_ray.data.tar_samples): counted, nothing to decode
        elif image_key is None:
            problem = f"no image (tried {self.image_keys})"
        elif caption_key is None:
            problem = f"no caption (tried {self.caption_keys})"
        else:
            try:
                out["caption"] = bytes(sample[caption_key]).decode("utf-8").strip()
            except UnicodeDecodeError:
                problem = f"caption .{caption_key} is not utf-8"
            try:
                image = _decode_image(bytes(sample[image_key]), r)
            except Exception as err:  # PIL raises many types for corrupted files
                problem = problem or f"image .{image_key} does not decode ({type(err).__name__})"
        return {**out, "image": image, "problem": problem}


class _ShardSamples:
    """Ray Data flat_map: one shard file's bytes -> its samples' fixed columns."""

    def __init__(self, fields: _SampleFields):
        self.fields = fields

    def __call__(self, row: dict) -> list[dict]:
        return [self.fields(sample) for sample in tar_samples(bytes(row["bytes"]), str(row["path"]))]


def _decode_image(data: bytes, resolution: int) -> np.ndarray:
    """Encoded image -> RGB uint8 (R, R, 3): centre square crop, then a bicubic resize if needed
    (as the diffusers training scripts prepare images; an R x R image is left untouched)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        if w != h:
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side))
        if side != resolution:
            img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8).copy()


class _VaeEncoder:
    """Actor UDF: builds the adapter once, encodes the usable images of each batch (zeros for the
    others, which the driver drops and counts)."""

    def __init__(self, config: RunConfig):
        import torch

        from sid_ray.models.registry import adapter_class

        self.device = torch.device("cuda" if config.train.use_gpu and torch.cuda.is_available() else "cpu")
        # the VAE alone where the family allows: no transformer or text encoder weights in the actor
        self.adapter = adapter_class(config.model.name).image_encoder(config.model)
        if self.device.type == "cuda":
            self.adapter.to(self.device)
        self.shape = tuple(self.adapter.latent_shape)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = np.asarray([p == "" for p in batch["problem"]], dtype=bool)
        latents = np.zeros((len(ok), *self.shape), np.float32)
        if ok.any():
            images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok])).float() / 255.0
            images = images.permute(0, 3, 1, 2).to(self.device)
            latents[ok] = self.adapter.encode_images(images).float().cpu().numpy()
        return {
            "key": batch["key"],
            "caption": batch["caption"],
            "problem": batch["problem"],
            "latents": latents,
        }


class _NpyRowWriter:
    """Appends rows to a .npy file whose length is unknown until the end (skips are only known
    after decoding): numpy pads every header so the first axis can grow in place, so the header
    is written for 0 rows and rewritten, same length, with the final count."""

    def __init__(self, path: Path):
        self.file, self.rows, self.shape = open(path, "wb"), 0, None

    def _header(self, rows: int) -> None:
        self.file.seek(0)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self.file, {**header, "shape": (rows, *self.shape)})

    def append(self, rows: np.ndarray) -> None:
        if self.shape is None:
            self.shape = tuple(rows.shape[1:])
            self._header(0)
        self.file.seek(0, os.SEEK_END)
        self.file.write(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        if self.shape is not None:
            end = self.file.seek(0, os.SEEK_END)
            self._header(self.rows)
            assert self.file.tell() + self.rows * int(np.prod(self.shape)) * 4 == end
        self.file.close()


def encode_pairs(config: RunConfig, log: Callable[[str], None] = print) -> PairTable:
    """The (latent, caption) table of `config.data.images`: loaded from the cache, else encoded now.

    Samples without an image or caption, or whose image does not decode, are skipped; their count
    and reasons are logged and kept in meta.json. Concurrent callers (several drivers on one
    machine) wait on a file lock for the first one's table.
    """
    urls = shard_urls(config.data.images)
    folder = pair_cache_folder(config, urls)
    if (folder / "meta.json").is_file():
        table = load_pair_table(folder)
        log(f"[pairs] cache hit: {len(table)} pairs ({table.num_skipped} skipped) in {folder}")
        return table
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "meta.json").is_file():
            partial = folder.with_name(f"{folder.name}.partial{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            try:
                _build(config, urls, partial, log)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    table = load_pair_table(folder)
    log(f"[pairs] table ready: {len(table)} pairs, {table.num_skipped} skipped, in {folder}")
    return table


def _build(config: RunConfig, urls: list[str], out: Path, log: Callable[[str], None]) -> None:
    start = time.monotonic()
    data = config.data
    image_keys, caption_keys = _split_keys(data.image_keys), _split_keys(data.caption_keys)
    log(
        f"[pairs] encoding {len(urls)} shard(s) of {data.images} with {config.model.name} "
        f"on {data.encode_workers} actor(s) -> {out.parent}"
    )
    ds = _encoded_samples(config, urls, image_keys, caption_keys)
    writer = _NpyRowWriter(out / "latents.npy")
    try:
        captions, skipped, skipped_keys = _write_pairs(ds, writer, start, log)
    finally:
        writer.close()
    num_skipped = sum(skipped.values())
    if num_skipped:
        reasons = ", ".join(f"{n} x {why}" for why, n in skipped.most_common())
        log(f"[pairs] skipped {num_skipped} sample(s): {reasons}; first: {skipped_keys[:5]}")
    if not captions:
        raise ConfigError(
            f"data.images: no usable (image, caption) pairs in {len(urls)} shard(s) of {data.images} "
            f"(image keys {image_keys}, caption keys {caption_keys}; skipped: {dict(skipped)})"
        )
    seconds = time.monotonic() - start
    (out / "captions.json").write_text(json.dumps(captions))
    meta = {
        "version": TABLE_VERSION,
        "source": data.images,
        "shards": urls,
        "model": config.model.name,
        "model_path": config.model.path,
        "resolution": config.model.resolution,
        "latent_shape": list(writer.shape),
        "num_pairs": len(captions),
        "num_skipped": num_skipped,
        "skipped": dict(skipped),
        "skipped_examples": skipped_keys,
        "seconds": round(seconds, 2),
        "created": time.time(),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    log(
        f"[pairs] {len(urls)} shard(s): {len(captions)} pairs encoded, {num_skipped} skipped, {seconds:.1f} s"
    )


def _encoded_samples(config: RunConfig, urls: list[str], image_keys, caption_keys):
    """The shards' samples, decoded and VAE-encoded on an actor pool, in the shards' order."""
    import ray.data

    ray.data.DataContext.get_current().execution_options.preserve_order = True  # the table's order
    # our tar reader, not read_webdataset: broken members are counted instead of failing the read
    # or silently ending the shard (sid_ray.data.tar_samples)
    fields = _SampleFields(image_keys, caption_keys, config.model.resolution)
    ds = ray.data.read_binary_files(**ray_read_args(urls), include_paths=True).flat_map(_ShardSamples(fields))
    resources = {"num_gpus": 1} if config.train.use_gpu else {"num_cpus": 1}
    return ds.map_batches(
        _VaeEncoder,
        fn_constructor_kwargs={"config": config},
        compute=ray.data.ActorPoolStrategy(size=config.data.encode_workers),
        batch_size=16,
        batch_format="numpy",
        **resources,
    )


def _write_pairs(ds, writer, start: float, log: Callable[[str], None]):
    """Write the usable rows' latents; returns (captions, skip reasons counted, first skipped keys)."""
    captions, skipped, skipped_keys = [], Counter(), []
    last_log = start
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        problems = [str(p) for p in batch["problem"]]
        ok = np.asarray([p == "" for p in problems], dtype=bool)
        writer.append(batch["latents"][ok])
        captions += [str(c) for c, good in zip(batch["caption"], ok, strict=True) if good]
        for key, problem in zip(batch["key"], problems, strict=True):
            if problem:
                skipped[problem] += 1
                if len(skipped_keys) < _MAX_LOGGED_SKIPS:
                    skipped_keys.append([str(key), problem])
        if time.monotonic() - last_log > 30:
            last_log = time.monotonic()
            log(f"[pairs] {len(captions)} encoded, {sum(skipped.values())} skipped, {last_log - start:.0f} s")
    return captions, skipped, skipped_keys
