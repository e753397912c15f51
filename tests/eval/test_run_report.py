"""Finding the generators a run's checkpoints carry."""

import json

import torch
from safetensors.torch import save_file

from sid_ray.eval.run_report import exported_generators


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
    assert found[-1][1].parent.parent.name == "checkpoint_00000200" and found[-1][2] == "abc"
    assert exported_generators(tmp_path / "missing") == []
