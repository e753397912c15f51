"""jobs/evaluate.py scores saved weights as the in-training evaluation scored them.

Fast: a single-process run's generator, saved and evaluated by the job. Slow: a Ray run (2 ZeRO-3
workers) logging to a real `mlflow server`; the job on its exported diffusers folder gives the
in-training FID within 1e-3 and logs an evaluation run tagged with the training run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from sid_ray.config.io import dump_config
from tests.train.test_in_training_eval import digits_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "jobs"))
import evaluate as evaluate_job  # noqa: E402  (jobs/evaluate.py)


def test_job_on_saved_weights_matches_the_local_in_training_fid(tmp_path):
    from sid_ray.train.local import run_local

    config = digits_config(tmp_path, "saved", "train.total_kimg=0.064")
    result = run_local(config, log=None)
    in_training = result.history[-1]
    weights = tmp_path / "generator.safetensors"
    save_file({k: v.contiguous() for k, v in result.generator.state_dict().items()}, weights)
    config_file = dump_config(config, tmp_path / "saved.yaml")
    out = tmp_path / "job"
    argv = [str(weights), "--config", str(config_file), "--out", str(out), "--no-mlflow"]
    assert evaluate_job.main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["kind"] == "weights" and report["eval_num_samples"] == 60
    assert abs(report["eval_fid"] - in_training["eval_fid"]) < 1e-3
    assert (
        abs(report["eval_prompted_digit_probability"] - in_training["eval_prompted_digit_probability"]) < 1e-3
    )
    assert (out / "samples_grid.png").stat().st_size > 0


def test_job_refuses_what_is_not_a_saved_generator(tmp_path, capsys):
    assert evaluate_job.main([str(tmp_path)]) == 2
    assert "not a pipeline folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_job_on_exported_pipeline_matches_ray_in_training_fid(tmp_path):
    import mlflow

    from sid_ray.train.launcher import launch
    from tests.local_ray import local_ray
    from tests.tune.mlflow_server import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        with local_ray(object_store_memory=int(5e8), log_to_driver=True):
            config = digits_config(
                tmp_path, "ray-eval", "train.total_kimg=0.064", "train.num_workers=2",
                "train.checkpoint_every_kimg=0.064", f"tracking.mlflow_uri={uri}", "tracking.experiment=eval-job",
            )  # fmt: skip
            result = launch(config, show_progress=False)
        in_training = result.metrics
        out = tmp_path / "job"
        assert evaluate_job.main([str(result.export_dir / "pipeline"), "--out", str(out)]) == 0
        report = json.loads((out / "metrics.json").read_text())
        assert report["kind"] == "pipeline"
        assert abs(report["eval_fid"] - in_training["eval_fid"]) < 1e-3

        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("eval-job")
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
        training, evaluation = runs["ray-eval"], runs["ray-eval-eval"]
        assert evaluation.data.tags["training_run_id"] == training.info.run_id
        # the same metric name, the same number, in both runs
        assert evaluation.data.metrics["eval_fid"] == pytest.approx(
            training.data.metrics["eval_fid"], abs=1e-3
        )
        artifacts = {a.path for a in client.list_artifacts(training.info.run_id, "eval")}
        assert {"eval/grids", "eval/quality_vs_kimg.png"} <= artifacts
        assert any(a.path == "model/LOADING.md" for a in client.list_artifacts(training.info.run_id, "model"))
