"""Finding the generators a run's checkpoints carry."""

import json
from pathlib import Path

import pyarrow.fs as pafs
import torch
from safetensors.torch import save_file

from sid_ray.eval.run_report import exported_generators, load_generator
from tests.data.s3_server import s3_server


def _checkpoint(run_dir, name, kimg, with_export=True):
    folder = run_dir / name
    (folder / "export").mkdir(parents=True)
    (folder / "train_state.json").write_text(json.dumps({"kimg": kimg, "mlflow_run_id": "abc"}))
    if with_export:
        save_file({"w": torch.zeros(1)}, folder / "export" / "generator.safetensors")


def test_exported_generators_sorted_by_kimg_and_only_with_weights(tmp_path):
    _checkpoint(tmp_path, "checkpoint_00000200", 6.4)
    _checkpoint(tmp_path, "checkpoint_00000050", 1.6)
    _checkpoint(tmp_path, "checkpoint_00000100", 3.2, with_export=False)
    found = exported_generators(tmp_path)
    assert [k for k, _, _ in found] == [1.6, 6.4]
    assert Path(found[-1][1]).parent.parent.name == "checkpoint_00000200" and found[-1][2] == "abc"
    assert exported_generators(tmp_path / "missing") == []


class _Adapter:
    """The one adapter method `load_generator` calls: a trainable copy to load weights into."""

    @staticmethod
    def make_trainable_copy(role):
        generator = torch.nn.Module()
        generator.w = torch.nn.Parameter(torch.ones(1))
        return generator


def test_checkpoints_in_s3_are_found_and_loaded_as_local_ones(tmp_path):
    """train.storage_path=s3://...: the checkpoints are in the bucket, not in the run folder."""
    _checkpoint(tmp_path, "checkpoint_00000050", 1.6)
    _checkpoint(tmp_path, "checkpoint_00000200", 6.4)
    _checkpoint(tmp_path, "checkpoint_00000100", 3.2, with_export=False)
    with s3_server("runs"):
        s3, path = pafs.FileSystem.from_uri("s3://runs/sweeps/demo")  # the server's endpoint
        pafs.copy_files(str(tmp_path), path, pafs.LocalFileSystem(), s3)
        found = exported_generators(path, s3)
        assert found == [
            (1.6, "runs/sweeps/demo/checkpoint_00000050/export/generator.safetensors", "abc"),
            (6.4, "runs/sweeps/demo/checkpoint_00000200/export/generator.safetensors", "abc"),
        ]
        assert exported_generators("runs/sweeps/missing", s3) == []
        assert torch.equal(load_generator(_Adapter(), found[-1][1], s3).w, torch.zeros(1))
