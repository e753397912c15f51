"""In-training evaluation of a run trained from the embedding cache (issue 13).

Its workers hold no text encoder: the embedding stage encodes the run's evaluation prompts that
are not held-out rows of the shards (here nothing is held out: the digits' ten class prompts) into
the cache's evaluation file (`embedding_build.eval_prompts`), and evaluation reads their
embeddings. On the digits teacher, a cached run with eval.every_kimg > 0 reports the same
evaluation metrics as the same run encoding its prompts in the loop (its losses are bit-identical,
its conditioning too), and its data counts reach its MLflow run at the start of training and the
console before the first progress line.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from sid_ray.config import load_config
from sid_ray.data import embedding_cache as cache
from sid_ray.toys.digits_data import digit_prompt
from sid_ray.train.launcher import launch
from tests.local_ray import local_ray

ROOT = Path(__file__).resolve().parents[2]
BATCH, ITERATIONS, EVAL_EVERY = 8, 4, 2
NOT_COMPARED = ("eval_seconds", "eval_share_of_wall")


def digits_config(tmp_path: Path, name: str, *overrides: str):
    return load_config(
        None,
        [
            f"name={name}",
            f"output_dir={tmp_path / 'runs'}",
            "model.name=digits-flux",
            "model.resolution=16",
            f"data.prompts={ROOT / 'configs/prompts/digits.txt'}",
            f"train.batch_size={BATCH}",
            "train.micro_batch_size=2",
            "train.num_workers=2",
            "train.cpus_per_worker=0.5",
            "train.log_every=1",
            "train.keep_checkpoints=0",
            "train.export_pipeline=false",
            f"train.total_kimg={ITERATIONS * BATCH / 1000}",
            f"train.checkpoint_every_kimg={ITERATIONS * BATCH / 1000}",
            f"eval.every_kimg={EVAL_EVERY * BATCH / 1000}",
            "eval.num_samples=20",
            "eval.batch_size=10",
            "optim.generator_lr=1e-4",
            "optim.fake_lr=1e-4",
            *overrides,
        ],
    )


def _evaluations(rows: list[dict]) -> dict[int, dict]:
    return {
        r["iteration"]: {k: v for k, v in r.items() if k.startswith("eval_") and k not in NOT_COMPARED}
        for r in rows
        if "eval_fid" in r
    }


@pytest.mark.ray
@pytest.mark.slow
def test_a_cached_run_evaluates_from_the_cache_as_an_encoding_run_does(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / "cache"
    with local_ray():
        encoded = launch(digits_config(tmp_path, "encoded"), False)
        cached = launch(
            digits_config(
                tmp_path,
                "cached",
                f"data.embedding_cache={folder}",
                f"tracking.mlflow_uri={uri}",
                "tracking.experiment=cached-eval",
            ),
            True,
        )
    out = capsys.readouterr().out

    expected = _evaluations(encoded.rows)
    assert sorted(expected) == [EVAL_EVERY, ITERATIONS]
    got = _evaluations(cached.rows)
    assert sorted(got) == sorted(expected)
    for iteration, metrics in expected.items():
        assert set(got[iteration]) == set(metrics) and len(metrics) >= 2  # FID and the alignment
        for key, value in metrics.items():
            assert got[iteration][key] == pytest.approx(value, rel=1e-6), (iteration, key)

    manifest = cache.read_manifest(folder)
    # nothing held out: the evaluation set is the digits' ten class prompts, all in the file
    assert manifest["eval_set"] == {
        "prompts": 10,
        "from_shards": 0,
        "file": cache.eval_set_file([digit_prompt(d) for d in range(10)]),
        "file_rows": 10,
    }
    assert (folder / manifest["eval_set"]["file"]).is_file()
    # the counts, before the first progress line and in the MLflow run from its first step
    assert "data: read files 1, lines 10, kept 10; truncated" in out
    assert "cache count 10, train_count 10, eval_count 0" in out
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("cached-eval").experiment_id
    (run,) = client.search_runs([experiment])
    assert run.data.metrics["data_cache_train_count"] == 10
    assert [m.step for m in client.get_metric_history(run.info.run_id, "data_read_kept")] == [0]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_fid")] == [
        EVAL_EVERY,
        ITERATIONS,
    ]
