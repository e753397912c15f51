"""The MLflow side of a run: no param cut silently, a tracking server that does not answer is
refused before any worker starts, and a diverging Ray run is stopped and marked in MLflow."""

from __future__ import annotations

import pytest

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.train.tracking import CUT_NOTE, GRID_DIR, MAX_PARAM_CHARS, param_values, resolve_tracking_uri
from tests.train.test_in_training_eval import digits_config


def test_long_param_values_are_cut_visibly_and_named():
    long_prompts = ";".join(f"prompts/part-{i:05d}.txt" for i in range(600))
    params, cut = param_values(load_config(None, [f"data.prompts={long_prompts}"]))
    assert cut == ["data.prompts"]
    assert len(params["data.prompts"]) == MAX_PARAM_CHARS and params["data.prompts"].endswith(CUT_NOTE)
    assert params["train.batch_size"] == "256"  # the others whole


def test_tracking_uri_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri("") == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:////x/m.db") == "sqlite:////x/m.db"


def test_a_server_that_does_not_answer_is_refused_before_ray_starts(tmp_path):
    import ray

    from sid_ray.train.launcher import launch
    from tests.tune.mlflow_server import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    config = load_config(None, [f"output_dir={tmp_path}", f"tracking.mlflow_uri={uri}"])
    with pytest.raises(ConfigError, match="does not answer"):
        launch(config, show_progress=False)
    assert not ray.is_initialized()


@pytest.mark.slow
@pytest.mark.ray
def test_diverging_ray_run_is_stopped_and_marked_in_mlflow(tmp_path, capfd):
    import mlflow

    from sid_ray.train.launcher import launch
    from tests.local_ray import local_ray
    from tests.tune.mlflow_server import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        with local_ray(object_store_memory=int(5e8), log_to_driver=True):
            config = digits_config(
                tmp_path, "diverging", "train.total_kimg=0.32", "train.num_workers=2",
                "optim.generator_lr=10", "optim.fake_lr=10",
                f"tracking.mlflow_uri={uri}", "tracking.experiment=diverge",
            )  # fmt: skip
            result = launch(config, show_progress=False)
        # the rows the workers sent the driver stop early (Ray's result holds the last checkpoint's)
        iterations = [row["iteration"] for row in result.rows if "iteration" in row]
        assert iterations and max(iterations) < 10  # of the run's 10
        out, err = capfd.readouterr()
        assert "run diverged at kimg" in out + err  # the driver prints the worker's message
        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("diverge").experiment_id])
        assert len(runs) == 1, [(r.info.run_name, r.info.status, r.data.tags) for r in runs]
        run = runs[0]
        assert run.info.status == "FAILED"
        assert run.data.tags["diverged"] == "true" and "diverged" in run.data.tags["diverged_reason"]
        # every evaluation left its grid, the one at which the run stopped included
        evaluated = client.get_metric_history(run.info.run_id, "eval_fid")
        grids = client.list_artifacts(run.info.run_id, GRID_DIR)
        assert evaluated and len(grids) == len(evaluated), (evaluated, [g.path for g in grids])


def test_an_attempt_that_died_before_its_first_checkpoint_is_logged_into_again(tmp_path):
    import mlflow

    from sid_ray.train.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(None, [f"output_dir={tmp_path}", f"tracking.mlflow_uri={uri}", "name=attempts"])
    first = MlflowTracker(config)
    mlflow.end_run("RUNNING")  # the worker group died: nothing closed the run, no checkpoint has its id
    retried = MlflowTracker(config)
    assert retried.run_id == first.run_id
    retried.close()
    fresh = MlflowTracker(config)  # a finished run is not reopened: a new run of the same name
    assert fresh.run_id != first.run_id
    fresh.close()
    runs = mlflow.MlflowClient(uri).search_runs([mlflow.get_experiment_by_name("sid_ray").experiment_id])
    assert len(runs) == 2
