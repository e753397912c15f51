"""The data stages' counts in MLflow (sqlite store): the embedding job's own run, and the counts of
the data a training run read, in that run."""

from __future__ import annotations

import json

import mlflow
import pytest

from jobs import embed
from sid_ray.train.launcher import launch
from tests.data.test_embedding_cache import PROMPTS, flux_folder  # noqa: F401 (fixture)
from tests.train.conftest import toy_config


def _only_run(uri: str, experiment: str):
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.ray
def test_the_embedding_job_logs_its_counts_and_manifest(tmp_path, flux_folder, ray_local, capsys):  # noqa: F811
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(("\n".join(PROMPTS + [PROMPTS[0], "", "   "]) + "\n").encode() + b"\xff\xfe broken\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [
        "--set",
        "model.name=flux-tiny",
        "--set",
        f"model.path={flux_folder}",
        "--set",
        "model.resolution=16",
    ]
    argv += ["--set", f"data.prompts={prompts}", "--set", f"data.embedding_cache={tmp_path / 'cache'}"]
    argv += ["--set", "data.min_prompt_chars=1", "--set", f"tracking.mlflow_uri={uri}"]
    argv += ["--set", "tracking.experiment=embed-test", "--set", "name=tiny"]
    assert embed.main(argv) == 0
    assert "MLflow run" in capsys.readouterr().out

    client, run = _only_run(uri, "embed-test")
    assert run.info.run_name == "tiny-embed" and run.info.status == "FINISHED"
    assert run.data.tags["sid_ray.stage"] == "embed"
    assert run.data.params["model"] == "flux-tiny" and run.data.params["sources"] == str(prompts)
    metrics = run.data.metrics
    assert metrics["data_read_duplicate"] == 1
    assert metrics["data_read_not_utf8"] == 1
    assert metrics["data_read_blank_line"] == 2  # the empty line and the one of spaces
    assert metrics["data_truncated_tokenizer"] == 1  # 200 x's over CLIP's 77 tokens
    assert metrics["data_cache_count"] == len(PROMPTS)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data/embedding_manifest.json")
    assert logged == manifest


@pytest.mark.ray
def test_a_training_run_logs_the_counts_of_its_data(tmp_path, ray_local):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"mode 0\nmode 1\n\nmode 1\nmode 2\n\xff bad\nnull\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = toy_config(
        tmp_path,
        "counted",
        f"data.prompts={prompts}",
        "data.min_prompt_chars=1",
        "train.total_kimg=0.016",
        "train.checkpoint_every_kimg=0.016",
        "train.cpus_per_worker=0.5",
        f"tracking.mlflow_uri={uri}",
        "tracking.experiment=train-test",
    )
    launch(config, show_progress=False)
    client, run = _only_run(uri, "train-test")
    metrics = run.data.metrics
    assert metrics["data_read_kept"] == 4  # mode 0, mode 1, mode 2, null
    assert metrics["data_read_duplicate"] == 1 and metrics["data_read_not_utf8"] == 1
    assert metrics["data_read_blank_line"] == 1
    assert metrics["data_prompts_train"] == 4 and metrics["data_prompts_held_out"] == 0
    # logged by rank 0 when it opens the run, at the iteration it starts from
    assert [m.step for m in client.get_metric_history(run.info.run_id, "data_read_kept")] == [0]
