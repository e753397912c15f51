"""Data-aided pairs: webdataset shards -> cached (latent, caption) table -> the per-rank stream.

One encode (Ray Data + one VAE actor, ~15 s on 2 cores) serves every test of the module: two
digits shards (the first 64 digits) plus a hand-made shard with a corrupted png and a sample
without caption, which must be skipped and counted while its good samples are kept.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re

import numpy as np
import pytest
import torch

from sid_ray.config.schema import ConfigError, DataConfig, ModelConfig, RunConfig
from sid_ray.data import image_pairs
from sid_ray.data.image_pairs import encode_pairs, pair_cache_folder, shard_urls
from sid_ray.data.pair_stream import PairCycle, RankPairs, RankPairStream
from sid_ray.data.prompts import PROMPT_STREAM
from sid_ray.toys.digits_data import digit_prompt, load_digit_images
from sid_ray.toys.digits_shards import ensure_digits_shards, write_digits_shards

pytestmark = pytest.mark.ray

NUM_DIGITS = 64
EXTRA = ["a good one", None, "another good one", "a corrupted png"]  # None = no caption member


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _extra_shard(path) -> None:
    """Sorts after digits-*.tar: two good samples, one without caption, one with a corrupted png."""
    import webdataset

    with open(path, "wb") as stream, webdataset.TarWriter(stream, encoder=False, mtime=0) as tar:
        for i, caption in enumerate(EXTRA):
            sample = {"__key__": f"extra{i}", "png": _png(40 * i)}
            if caption == "a corrupted png":
                sample["png"] = b"\x89PNG\r\n\x1a\n this is not an image"
            if caption is not None:
                sample["txt"] = caption.encode()
            tar.write(sample)


def _config(tmp, images) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="digits-flux", resolution=16),
        data=DataConfig(images=str(images), latent_cache=str(tmp / "cache")),
    )


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, ray_local):
    tmp = tmp_path_factory.mktemp("pairs")
    write_digits_shards(tmp / "shards", num_shards=2, limit=NUM_DIGITS)
    _extra_shard(tmp / "shards" / "zz-extra.tar")
    config = _config(tmp, tmp / "shards")
    lines = []
    table = encode_pairs(config, log=lines.append)
    return tmp, config, table, lines


def test_digits_shards_are_deterministic_and_reused(tmp_path):
    first = [p.read_bytes() for p in write_digits_shards(tmp_path / "a", num_shards=2, limit=10)]
    second = [p.read_bytes() for p in write_digits_shards(tmp_path / "b", num_shards=2, limit=10)]
    assert first == second
    mtimes = [p.stat().st_mtime_ns for p in ensure_digits_shards(tmp_path / "a", num_shards=2, limit=10)]
    assert mtimes == [p.stat().st_mtime_ns for p in sorted((tmp_path / "a").glob("*.tar"))]
    assert len(ensure_digits_shards(tmp_path / "a", num_shards=3, limit=10)) == 3  # rewritten
    assert len(list((tmp_path / "a").glob("*.tar"))) == 3  # the 2-shard split is gone


def test_shard_sources(tmp_path):
    paths = write_digits_shards(tmp_path, num_shards=3, limit=6)
    expected = [str(p.resolve()) for p in paths]
    assert shard_urls(str(tmp_path)) == expected
    assert shard_urls(str(tmp_path / "digits-*.tar")) == expected
    assert shard_urls(str(tmp_path / "digits-{000000..000002}.tar")) == expected
    for missing in (tmp_path / "nothing", tmp_path / "*.zip", tmp_path / "x-{0..3}.tar"):
        with pytest.raises(ConfigError, match=r"data\.images.*" + re.escape(str(tmp_path))):
            shard_urls(str(missing))
    with pytest.raises(ConfigError, match=r"data\.images"):
        encode_pairs(_config(tmp_path, tmp_path / "missing"))


def test_round_trip_and_skips(encoded):
    _, config, table, lines = encoded
    good_extra = [c for c in EXTRA if c not in (None, "a corrupted png")]
    images, labels = load_digit_images()
    assert table.captions == [digit_prompt(int(d)) for d in labels[:NUM_DIGITS]] + good_extra
    assert table.num_skipped == 2
    assert sorted(table.meta["skipped"]) == [
        "image .png does not decode (UnidentifiedImageError)",
        "no caption (tried ['txt', 'caption'])",
    ]
    assert any("skipped 2 sample(s)" in line for line in lines)
    assert isinstance(table.latents, np.memmap) and table.latents.dtype == np.float32

    from sid_ray.models.registry import build_adapter

    adapter = build_adapter(copy.deepcopy(config))  # the digits adapter fills in config.model.path
    assert table.latents.shape == (len(table.captions), *adapter.latent_shape)
    # the shards hold 8-bit PNGs: the same quantised images, through the same VAE
    digits = torch.round(images[:NUM_DIGITS] * 255) / 255
    extra = torch.tensor([0.0, 80.0]).div(255).view(2, 1, 1, 1).expand(2, 3, 16, 16)
    expected = adapter.encode_images(torch.cat([digits, extra]))
    assert torch.allclose(torch.from_numpy(np.array(table.latents)), expected, atol=1e-5)


def test_second_call_is_a_cache_hit(encoded, monkeypatch):
    _, config, table, _ = encoded
    stamp = (table.folder / "latents.npy").stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("encode_pairs re-encoded a cached table")

    monkeypatch.setattr(image_pairs, "_build", no_build)
    lines = []
    again = encode_pairs(config, log=lines.append)
    assert again.folder == table.folder and again.captions == table.captions
    assert (again.folder / "latents.npy").stat().st_mtime_ns == stamp
    assert "cache hit" in lines[0]


def test_changed_shard_gets_a_new_table(encoded):
    tmp, config, table, _ = encoded
    assert pair_cache_folder(config) == table.folder
    shard = tmp / "shards" / "digits-000001.tar"
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert pair_cache_folder(config) != table.folder
    finally:
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert pair_cache_folder(config) == table.folder
    other_model = _config(tmp, tmp / "shards")
    other_model.model.dtype = "float64"
    assert pair_cache_folder(other_model) != table.folder


def test_single_process_order_equals_the_ranks(encoded):
    _, _, table, _ = encoded
    seed, batch, world, iterations = 5, 8, 2, 20  # 160 positions over 70 rows: 3 epochs
    per_rank = batch // world
    local = np.arange(iterations * per_rank)
    ranks = [RankPairs(table.folder, seed, r, world, batch)({"id": local}) for r in range(world)]
    cycle = PairCycle(table, seed=seed)
    for i in range(iterations):
        captions, latents = cycle.take(batch)
        rows = slice(i * per_rank, (i + 1) * per_rank)
        assert [p for r in ranks for p in r["prompt"][rows]] == captions
        assert np.array_equal(np.concatenate([r["latents"][rows] for r in ranks]), latents.numpy())
        assert np.concatenate([r["position"][rows] for r in ranks]).tolist() == list(
            range(i * batch, (i + 1) * batch)
        )
    assert cycle.position == iterations * batch
    resumed = PairCycle(table.folder, seed=seed, position=3 * batch)  # a resumed run's position
    assert resumed.take(batch)[0] == PairCycle(table, seed=seed).take(4 * batch)[0][3 * batch :]


def test_rank_pair_stream_through_ray_data(encoded):
    import ray.data

    _, _, table, _ = encoded
    seed, batch, world = 1, 8, 2
    stream = RankPairStream(table.folder, seed, batch)
    pickled_udf = RankPairs(table.folder, seed, 0, world, batch)
    pickled_udf({"id": np.arange(2)})
    assert pickled_udf.__getstate__()["_table"] is None  # ships the folder, never the table
    rows = ray.data.range(6 * batch // world)
    iterators = stream.configure({PROMPT_STREAM: rows}, world, None, None)
    got = [list(it[PROMPT_STREAM].iter_rows()) for it in iterators]
    cycle = PairCycle(table, seed=seed)
    for i in range(6):
        captions, latents = cycle.take(batch)
        joined = [row for r in range(world) for row in got[r][i * 4 : (i + 1) * 4]]
        assert [row["prompt"] for row in joined] == captions
        assert [row["position"] for row in joined] == list(range(i * batch, (i + 1) * batch))
        assert np.array_equal(np.stack([row["latents"] for row in joined]), latents.numpy())
    assert json.loads((table.folder / "meta.json").read_text())["num_pairs"] == len(table)


def test_shards_without_a_usable_pair_name_the_problem(tmp_path, ray_local):
    import webdataset

    folder = tmp_path / "bad"
    folder.mkdir()
    with open(folder / "bad.tar", "wb") as stream, webdataset.TarWriter(stream, encoder=False) as tar:
        tar.write({"__key__": "corrupt", "png": b"\x89PNG not an image", "txt": b"a handwritten one"})
        tar.write({"__key__": "nocaption", "png": _png(10)})
    with pytest.raises(ConfigError, match="no usable"):
        encode_pairs(_config(tmp_path, folder), log=lambda _line: None)
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())  # no table left behind


def test_skipped_samples_reach_mlflow_as_the_launcher_logs_them(encoded, tmp_path):
    import mlflow

    from sid_ray.data.data_tracking import count_metrics, log_counts
    from sid_ray.train.launcher import data_stage

    _, config, table, _ = encoded
    stage = data_stage(config)  # the launcher's data stage: the table's cache hit, its counts
    assert stage.counts["pairs"] == {"rows": len(table), "skipped": 2}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("pairs")).info.run_id
    log_counts(uri, run_id, stage.counts, step=3, artifacts=stage.artifacts)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["data_pairs_skipped"] == 2 and metrics["data_pairs_rows"] == len(table)
    # one metric per reason, its name the reason with what MLflow refuses in a name replaced
    assert metrics["data_pairs_skipped_image .png does not decode _UnidentifiedImageError_"] == 1
    reasons = count_metrics({"pairs_skipped": table.meta["skipped"]})
    assert len(reasons) == 2 and all(metrics[name] == 1 for name in reasons)
