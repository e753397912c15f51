"""The same seeds give the same numbers twice; another seed gives others."""

import torch

from sid_ray.config import load_config
from sid_ray.train.local import run_local


def _run(tmp_path, seed):
    config = load_config(
        None,
        [
            "model.name=gmm-ring",
            "model.toy_fit_steps=50",
            "train.total_kimg=0.768",
            "train.batch_size=128",
            "train.micro_batch_size=64",
            "train.log_every=2",
            f"train.seed={seed}",
            f"output_dir={tmp_path}",
            "optim.generator_lr=1e-4",
            "optim.fake_lr=1e-4",
        ],
    )
    return run_local(config, log=None)


def test_same_seed_same_numbers_twice(tmp_path):
    a, b, c = _run(tmp_path, 0), _run(tmp_path, 0), _run(tmp_path, 1)
    assert len(a.history) == 3
    assert a.history == b.history
    for p, q in zip(a.generator.state_dict().values(), b.generator.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert a.history != c.history
    # the run moved the generator away from its starting copy
    start = a.adapter.make_trainable_copy("generator").state_dict()
    assert any(not torch.equal(p, start[k]) for k, p in a.generator.state_dict().items())
    assert (tmp_path / "sid" / "config.yaml").is_file()
