"""Webdataset shards with broken members: intact samples kept, broken stretches counted, and the
data-aided encode (Ray Data + a VAE actor) skips and counts them instead of failing."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from sid_ray.config.schema import DataConfig, ModelConfig, RunConfig
from sid_ray.data.image_pairs import encode_pairs
from sid_ray.data.tar_samples import BLOCK, CORRUPT_HEADER, TRUNCATED_MEMBER, tar_samples


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def shard_bytes(count: int, prefix: str = "s") -> bytes:
    import webdataset

    stream = io.BytesIO()
    with webdataset.TarWriter(stream, encoder=False, mtime=0) as tar:
        for i in range(count):
            tar.write({"__key__": f"{prefix}{i}", "png": _png(10 * i), "txt": f"digit {i % 10}".encode()})
    return stream.getvalue()


def member_offsets(data: bytes) -> list[int]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.offset for m in tar.getmembers()]


def corrupt_header(data: bytes, member: int) -> bytes:
    out, offset = bytearray(data), member_offsets(data)[member]
    out[offset + 148 : offset + 156] = b"garbage!"  # the header checksum no longer matches
    return bytes(out)


def truncated(data: bytes, member: int) -> bytes:
    return data[: member_offsets(data)[member] + BLOCK + 20]  # inside the member's data


def test_intact_shards_read_as_webdataset_groups_them():
    samples = list(tar_samples(shard_bytes(3), "a.tar"))
    assert [s["__key__"] for s in samples] == ["s0", "s1", "s2"]
    assert samples[1]["txt"] == b"digit 1" and samples[1]["png"] == _png(10)


def test_a_corrupt_header_is_counted_and_the_shard_continues():
    samples = list(tar_samples(corrupt_header(shard_bytes(6), member=4), "a.tar"))  # s2.png
    problems = [s["__problem__"] for s in samples if "__problem__" in s]
    assert problems == [CORRUPT_HEADER]
    keys = [s["__key__"] for s in samples if "__problem__" not in s]
    assert keys == ["s0", "s1", "s2", "s3", "s4", "s5"]  # s2 lost its png: the caption alone is left
    assert "png" not in samples[3] and all("png" in s for s in samples if s["__key__"] in ("s3", "s5"))


def test_a_truncated_member_is_counted_and_ends_the_shard():
    samples = list(tar_samples(truncated(shard_bytes(6), member=8), "a.tar"))  # s4.png
    assert [s.get("__problem__", s["__key__"]) for s in samples] == ["s0", "s1", "s2", "s3", TRUNCATED_MEMBER]
    # cut between members (no end-of-archive marker): the complete members are kept, the cut counted
    cut = shard_bytes(2)[: member_offsets(shard_bytes(2))[2]]
    assert [s.get("__problem__", s["__key__"]) for s in tar_samples(cut, "a.tar")] == ["s0", TRUNCATED_MEMBER]


@pytest.mark.ray
def test_encoding_broken_shards_skips_and_counts(tmp_path, ray_local):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.tar").write_bytes(shard_bytes(4, "a"))
    (shards / "b.tar").write_bytes(corrupt_header(shard_bytes(4, "b"), member=2))  # b1.png
    (shards / "c.tar").write_bytes(truncated(shard_bytes(4, "c"), member=6))  # c3.png
    config = RunConfig(
        model=ModelConfig(name="digits-flux", resolution=16),
        data=DataConfig(images=str(shards), latent_cache=str(tmp_path / "cache")),
    )
    table = encode_pairs(config, log=print)
    # a: 4; b: 3 intact (b1 lost its image); c: 3 before the truncated member
    assert len(table) == 10
    skipped = table.meta["skipped"]
    assert skipped[CORRUPT_HEADER] == 1 and skipped[TRUNCATED_MEMBER] == 1
    assert skipped["no image (tried ['png', 'jpg', 'jpeg', 'webp'])"] == 1
    assert table.captions[:4] == ["digit 0", "digit 1", "digit 2", "digit 3"]


def test_the_encode_actor_loads_the_vae_alone(tmp_path):
    import torch

    from sid_ray.models.registry import adapter_class, build_adapter
    from sid_ray.models.tiny.flux import build_tiny_flux

    torch.manual_seed(0)
    model = ModelConfig(name="flux-tiny", path=str(build_tiny_flux(tmp_path / "flux")), resolution=16)
    lean = adapter_class("flux-tiny").image_encoder(model)
    assert all(p.is_meta for p in lean.transformer.parameters())
    assert not any(k.startswith("text_encoder") for k in lean.components)
    images = torch.rand(2, 3, 16, 16)
    full = build_adapter(model)
    assert torch.equal(lean.encode_images(images), full.encode_images(images))
    assert lean.latent_shape == full.latent_shape
