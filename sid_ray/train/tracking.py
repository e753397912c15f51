"""MLflow from rank 0: one run per distillation, as a person compares them in `mlflow ui`.

The run holds the resolved config as params (flattened; a value over MLflow's length limit is
logged cut, says so in its text and in the `params_cut` tag, and is whole in the `config.yaml`
artifact), losses and img/s every `train.log_every` iterations, the in-training evaluation's
metrics (the names `jobs/evaluate.py` uses), a sample grid per evaluation and the FID/alignment
curve, the final exported generator, and `diverged` tags when a run is stopped as diverged.
The run id is kept in the checkpoint's train state, so a resumed run (after a worker failure or
when the same run name is started again) keeps logging into the same MLflow run.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sid_ray.config.io import config_to_dict, dump_config
from sid_ray.config.schema import ConfigError, RunConfig

#: MLflow's limit on a param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH in 3.x)
MAX_PARAM_CHARS = 6000
RUN_DIR_TAG = "sid_ray.run_dir"
CUT_NOTE = " ... [cut: the whole value is in the config.yaml artifact]"
GRID_DIR = "eval/grids"  # each evaluation's sample grid, `grid_name(kimg)`


def grid_name(kimg: float) -> str:
    """The artifact name of the sample grid of the evaluation at `kimg` (a sweep waits for it)."""
    return f"grid_kimg{kimg:09.3f}.png"


LOADER_NOTE = """The distilled generator of MLflow run {run_id}.

pipeline/ (when present) is a stock diffusers pipeline folder that samples in {steps} steps:

    import mlflow, diffusers
    path = mlflow.artifacts.download_artifacts(run_id="{run_id}", artifact_path="model/pipeline")
    pipe = diffusers.DiffusionPipeline.from_pretrained(path)

generator.safetensors is the generator module's state dict (sid_ray: jobs/evaluate.py --weights).
mlflow.diffusers (MLflow 3.17) logs only LoRA adapters over a base model, not full pipelines,
which is why the folder is logged as plain artifacts.
"""


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def param_values(config: RunConfig) -> tuple[dict[str, str], list[str]]:
    """(the flattened config as MLflow params, the names whose value had to be cut)."""
    params, cut = {}, []
    for key, value in flatten(config_to_dict(config)).items():
        text = str(value)
        if len(text) > MAX_PARAM_CHARS:
            text, cut = text[: MAX_PARAM_CHARS - len(CUT_NOTE)] + CUT_NOTE, [*cut, key]
        params[key] = text
    return params, cut


def absolute_tracking_uri(uri: str) -> str:
    """sqlite:///relative/path.db -> sqlite:////abs/path.db, resolved where the run is started.

    Ray Train workers run in their own working directories, so a relative sqlite path would give
    every process its own database.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def resolve_tracking_uri(uri: str) -> str:
    """The URI a run logs to: `tracking.mlflow_uri`, else MLFLOW_TRACKING_URI, absolute."""
    return absolute_tracking_uri(uri or os.environ.get("MLFLOW_TRACKING_URI", ""))


def check_tracking_uri(uri: str, timeout: float = 10.0) -> None:
    """Fail on the driver, before any worker starts, when an MLflow server does not answer or a
    sqlite store's folder cannot be made."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError) as err:
            raise ConfigError(
                f"tracking.mlflow_uri: the MLflow server {uri} does not answer ({err}); start it "
                "(mlflow server --backend-store-uri sqlite:///runs/mlflow.db) or fix the URI"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"tracking.mlflow_uri: cannot create {folder} for {uri}: {err}") from None


class MlflowTracker:
    """Opens (or re-opens) the run's MLflow run and logs params, metrics and artifacts."""

    def __init__(self, config: RunConfig, run_id: str = ""):
        import mlflow

        self.mlflow, self.config = mlflow, config
        self.client = mlflow.MlflowClient(config.tracking.mlflow_uri)
        mlflow.set_tracking_uri(config.tracking.mlflow_uri)
        experiment = mlflow.set_experiment(config.tracking.experiment)
        run_id = run_id or config.tracking.run_id or self._unfinished_attempt(experiment.experiment_id)
        if run_id:
            self.run = mlflow.start_run(run_id=run_id)
        else:
            tags = {RUN_DIR_TAG: self._run_dir()}
            self.run = mlflow.start_run(
                experiment_id=experiment.experiment_id, run_name=config.name, tags=tags
            )
        self.run_id = self.run.info.run_id
        if not self.client.get_run(self.run_id).data.params:  # a new run, or a sweep's empty trial run
            self._log_config()

    def _run_dir(self) -> str:
        return str(Path(self.config.output_dir).resolve() / self.config.name)

    def _unfinished_attempt(self, experiment_id: str) -> str:
        """The run a failed attempt of this run folder opened before its first checkpoint (so no
        checkpoint holds its id): Ray Train restarts the workers, and they log into it again."""
        query = f"tags.`{RUN_DIR_TAG}` = '{self._run_dir()}' and attributes.status = 'RUNNING'"
        found = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
        return found[0].info.run_id if found else ""

    def _log_config(self) -> None:
        params, cut = param_values(self.config)
        self.mlflow.log_params(params)
        if cut:
            self.mlflow.set_tag("params_cut", ", ".join(cut))
        with tempfile.TemporaryDirectory() as tmp:
            self.mlflow.log_artifact(str(dump_config(self.config, Path(tmp) / "config.yaml")))

    def log(self, metrics: dict[str, float], step: int) -> None:
        numbers = {k.replace("/", "_"): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.mlflow.log_metrics(numbers, step=step)

    def log_evaluation(self, kimg: float, grid, alignment_key: str, alignment_name: str) -> None:
        """The evaluation's sample grid, and the curve of every evaluation so far (from the run's
        own metric history, so a resumed run's curve starts at its first kimg)."""
        from sid_ray.eval.curves import save_quality_curve
        from sid_ray.eval.grids import save_sample_grid

        history = {
            key: {m.step: m.value for m in self.client.get_metric_history(self.run_id, key)}
            for key in ("eval_fid", f"eval_{alignment_key}")
        }
        steps = sorted(history["eval_fid"])
        kimg_of_step = self.config.train.batch_size / 1000
        with tempfile.TemporaryDirectory() as tmp:
            title = f"{self.config.name} at {kimg:.3f} kimg"
            grid_png = save_sample_grid({"generator": grid}, Path(tmp) / grid_name(kimg), title=title)
            self.mlflow.log_artifact(str(grid_png), artifact_path=GRID_DIR)
            curve = save_quality_curve(
                [s * kimg_of_step for s in steps],
                [history["eval_fid"][s] for s in steps],
                [history[f"eval_{alignment_key}"].get(s, float("nan")) for s in steps],
                Path(tmp) / "quality_vs_kimg.png",
                alignment_name,
                title=f"{self.config.name}: in-training evaluation",
            )
            self.mlflow.log_artifact(str(curve), artifact_path="eval")

    def log_model(self, *paths: Path) -> None:
        """The final export (generator weights, pipeline folder) under model/, with a note on
        loading it."""
        if not self.config.tracking.log_model:
            return
        for path in paths:
            if path.is_dir():
                self.mlflow.log_artifacts(str(path), artifact_path=f"model/{path.name}")
            elif path.is_file():
                self.mlflow.log_artifact(str(path), artifact_path="model")
        note = LOADER_NOTE.format(run_id=self.run_id, steps=self.config.sid.num_steps)
        self.mlflow.log_text(note, "model/LOADING.md")

    def mark_diverged(self, message: str) -> None:
        self.mlflow.set_tags({"diverged": "true", "diverged_reason": message})
        self.close("FAILED")

    def close(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def make_tracker(config: RunConfig, rank: int, run_id: str = "") -> MlflowTracker | None:
    if rank != 0 or not config.tracking.mlflow_uri:
        return None
    return MlflowTracker(config, run_id)
