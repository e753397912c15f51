"""What differs between teachers is asked of the adapter, never read off its name or type.

The class-level capabilities answer without weights (the Ray driver and the job scripts ask them
before anything loads); the instance-level ones have defaults the toys rely on.
"""

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.models.registry import adapter_class, build_adapter, registered_names


@pytest.mark.parametrize(
    "name, family",
    [
        ("flux-dev", "flux"),
        ("flux-tiny", "flux"),
        ("digits-flux", "flux"),  # a tiny FLUX pipeline: jobs/distill_flux.py takes it
        ("sd35-large", "sd3"),
        ("sd3-medium", "sd3"),
        ("sana-600m", "sana"),
        ("gmm-ring", "gmm"),
    ],
)
def test_each_teacher_names_its_family(name, family):
    assert adapter_class(name).family == family


@pytest.mark.parametrize("name", ["flux-dev", "digits-flux", "sd35-large", "sana-600m"])
def test_diffusers_teachers_export_a_pipeline_folder(name):
    assert adapter_class(name).exports_pipeline


def test_the_exact_teacher_exports_its_weights_file_only():
    assert not adapter_class("gmm-ring").exports_pipeline


def test_every_registered_teacher_has_a_family():
    assert all(adapter_class(name).family for name in registered_names())


def test_only_the_digits_teacher_writes_images_of_its_own(tmp_path):
    adapter_class("flux-tiny").ensure_images(str(tmp_path / "user"))
    assert not (tmp_path / "user").exists()
    adapter_class("digits-flux").ensure_images(str(tmp_path / "shards/{000000..000003}.tar"))
    assert not (tmp_path / "shards").exists()  # a pattern names the user's own shards
    adapter_class("digits-flux").ensure_images(str(tmp_path / "digits"))
    assert len(list((tmp_path / "digits").glob("digits-*.tar"))) == 4


def test_a_formula_teacher_stays_on_the_cpu_and_ignores_checkpointing():
    adapter = build_adapter(load_config(None, ["model.name=gmm-ring"]))
    assert adapter.device == torch.device("cpu")
    assert adapter.to("meta") is adapter
    adapter.set_gradient_checkpointing(True, [adapter.teacher])  # nothing to recompute: no error
