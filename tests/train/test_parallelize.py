"""`parallelize`'s choices (ZeRO stage per network and why) and compiled blocks (`train.compile`).

The compiled run must compute what the eager run computes: same losses on the tiny FLUX in
shared-base LoRA mode with activation checkpointing, the mode where one compiled block serves T,
F and G with their adapters switched (guard variants) and recomputed under checkpointing.
"""

from __future__ import annotations

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.train.compile import repeated_blocks
from sid_ray.train.parallelize import zero_plan


def _config(tmp_path, *overrides: str):
    return load_config(
        None,
        [
            "name=compile",
            f"output_dir={tmp_path}",
            "model.name=flux-tiny",
            "model.init=random",
            "model.resolution=16",
            "model.gradient_checkpointing=true",
            "model.lora.mode=shared_base",
            "sid.teacher_guidance=3.5",
            "train.batch_size=2",
            "train.micro_batch_size=1",
            "train.total_kimg=0.004",
            "train.log_every=1",
            *overrides,
        ],
    )


@pytest.mark.parametrize(
    ("mode", "asked", "stage", "teacher_engine", "says"),
    [
        ("shared_base", 3, 2, False, "train.zero_stage=3 -> 2"),
        ("lora", 2, 2, True, "T is its own copy"),
        ("full", 3, 3, True, "full copies; train.zero_stage=3"),
        ("full", 2, 2, True, "train.zero_stage=2"),
    ],
)
def test_zero_plan_says_which_stage_and_why(tmp_path, mode, asked, stage, teacher_engine, says):
    config = _config(tmp_path, f"model.lora.mode={mode}", f"train.zero_stage={asked}")
    plan = zero_plan(config)
    assert (plan.trained_stage, plan.teacher_engine) == (stage, teacher_engine)
    assert says in plan.describe()
    assert f"F, G: ZeRO-{stage}" in plan.describe()
    assert ("teacher" in plan.sharded_roles) == teacher_engine
    assert ("fake" in plan.sharded_roles) == (stage == 3)


def _losses(config) -> tuple[list[tuple[float, float]], list[str]]:
    from sid_ray.train.local import run_local

    notes: list[str] = []
    result = run_local(config, ["a red fox", "a blue car"], log=notes.append, write_config=False)
    torch._dynamo.reset()  # compiled graphs hold the blocks: leave none to the next test
    return [(r["loss/fake"], r["loss/generator"]) for r in result.history], notes


def test_compiled_blocks_compute_the_eager_losses(tmp_path):
    eager, eager_notes = _losses(_config(tmp_path / "eager"))
    compiled, notes = _losses(
        _config(tmp_path / "compiled", "train.compile=blocks", "train.compile_backend=aot_eager")
    )
    assert "activation checkpointing: all" in eager_notes
    assert not any("compiled" in n for n in eager_notes)
    assert any(n.startswith("compiled ") and "aot_eager" in n for n in notes), notes
    assert len(compiled) == len(eager) == 2
    # L_G is a difference of near-equal terms: float32 reassociation under load moves it ~2e-5
    for (f_c, g_c), (f_e, g_e) in zip(compiled, eager, strict=True):
        assert f_c == pytest.approx(f_e, rel=1e-4, abs=1e-5)
        assert g_c == pytest.approx(g_e, rel=1e-4, abs=1e-5)


def test_cudnn_attention_hooks_only_the_eager_transformers_and_changes_no_loss(tmp_path):
    eager, _ = _losses(_config(tmp_path / "auto"))
    hooked, notes = _losses(_config(tmp_path / "cudnn", "train.attention_backend=cudnn"))
    hooked_modules = [int(n.split()[2]) for n in notes if n.startswith("cuDNN attention: ")]
    assert hooked_modules and hooked_modules[0] > 0, notes  # the shared base's attention modules
    assert hooked == eager  # an identity, forward and backward
    _, compiled_notes = _losses(
        _config(
            tmp_path / "compiled",
            "train.attention_backend=cudnn",
            "train.compile=blocks",
            "train.compile_backend=aot_eager",
        )
    )
    assert not any(n.startswith("cuDNN attention: ") for n in compiled_notes), compiled_notes


def test_repeated_blocks_are_every_dit_block(tmp_path):
    from sid_ray.models.registry import build_adapter

    config = _config(tmp_path)
    adapter = build_adapter(config.model)
    transformer = adapter.transformer
    expected = len(transformer.transformer_blocks) + len(transformer.single_transformer_blocks)
    assert len(repeated_blocks(transformer)) == expected > 0


@pytest.mark.slow
def test_inductor_compiled_blocks_compute_the_eager_losses(tmp_path):
    eager, _ = _losses(_config(tmp_path / "eager"))
    compiled, notes = _losses(_config(tmp_path / "compiled", "train.compile=blocks"))
    assert any("inductor" in n for n in notes), notes
    for (f_c, g_c), (f_e, g_e) in zip(compiled, eager, strict=True):
        assert f_c == pytest.approx(f_e, rel=1e-4, abs=1e-5)
        assert g_c == pytest.approx(g_e, rel=1e-4, abs=1e-5)
