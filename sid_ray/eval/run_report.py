"""The quality report of a finished distillation run: table rows, sample grid, curve, MLflow.

Reads what the workers wrote into the run's checkpoints (each checkpoint's `export/` holds the
consolidated generator weights and `train_state.json` its kimg), wherever Ray Train keeps them (the
run folder, or `train.storage_path` on S3 or GCS: `run_storage.checkpoint_storage`), evaluates the teacher with 32
and 4 Euler steps and the student with 1 and 4 steps on one fixed prompt/seed set, plots FID
and alignment against kimg over the checkpoints, and logs it all into the run's MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
from safetensors.torch import load as load_safetensors

from sid_ray.config.paths import EXPORT_DIR, GENERATOR_WEIGHTS, STATE_FILE
from sid_ray.config.schema import RunConfig
from sid_ray.eval.curves import save_quality_curve
from sid_ray.eval.evaluate import (
    EvalRow,
    QualityMetrics,
    ancestral_sampler,
    euler_sampler,
    evaluate_sampler,
    format_table,
    generator_sampler,
    write_comparison_grid,
)
from sid_ray.eval.prompts import PromptSet
from sid_ray.models.base import FlowModel


@dataclass
class RunReport:
    rows: list[EvalRow]
    table: str
    grid: Path
    curve: Path | None
    curve_points: list[dict] = field(default_factory=list)
    run_id: str = ""  # the training run's MLflow run, from its last checkpoint


def _on(fs: pafs.FileSystem | None, path: str | Path) -> tuple[pafs.FileSystem, str]:
    """`fs` and `path` on it; None: the local file system, the path made absolute."""
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())
    return fs, str(path).rstrip("/")


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def exported_generators(
    folder: str | Path, fs: pafs.FileSystem | None = None
) -> list[tuple[float, str, str]]:
    """(kimg, generator weights, mlflow run id) of every checkpoint in `folder` with an export, by
    kimg. `fs`: the file system the checkpoints are on (S3, GCS: `run_storage.checkpoint_storage`),
    None for a local folder; the weights are a path on it."""
    fs, folder = _on(fs, folder)
    # one recursive listing: object stores have no directories (the GCS emulator lists none at
    # the top level), only keys under the folder's prefix
    listed = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    files = {i.path[len(folder) + 1 :] for i in listed if i.type == pafs.FileType.File}
    found = []
    for name in {f.split("/")[0] for f in files if f.startswith("checkpoint_")}:
        state_file, weights = f"{name}/{STATE_FILE}", f"{name}/{EXPORT_DIR}/{GENERATOR_WEIGHTS}"
        if state_file in files and weights in files:
            state = json.loads(_read(fs, f"{folder}/{state_file}"))
            found.append((float(state["kimg"]), f"{folder}/{weights}", state.get("mlflow_run_id", "")))
    return sorted(found)


def load_generator(adapter, weights: str | Path, fs: pafs.FileSystem | None = None) -> FlowModel:
    """A generator copy with the weights of a file on `fs` (None: a local file)."""
    fs, path = _on(fs, weights)
    generator = adapter.make_trainable_copy("generator")
    generator.load_state_dict(load_safetensors(_read(fs, path)))
    return generator.eval()


def evaluate_run(
    config: RunConfig,
    adapter,
    checkpoint_folder: str | Path,
    prompts: PromptSet,
    metrics: QualityMetrics,
    out_dir: Path,
    log=print,
    fs: pafs.FileSystem | None = None,
) -> RunReport:
    """Teacher and student rows, the grid and the curve of a finished run whose checkpoints are
    in `checkpoint_folder` on `fs` (`run_storage.checkpoint_storage(config)`; None: local)."""
    checkpoints = exported_generators(checkpoint_folder, fs)
    if not checkpoints:
        raise FileNotFoundError(f"no checkpoint under {checkpoint_folder} holds an exported generator")
    out_dir.mkdir(parents=True, exist_ok=True)
    K, shift = config.sid.num_steps, config.sid.rollout_time_shift
    guidance = config.sid.teacher_guidance
    rows, images = [], {}
    samplers = [
        ("teacher Euler", 32, euler_sampler(adapter.teacher, 32, guidance)),
        ("teacher Euler", 4, euler_sampler(adapter.teacher, 4, guidance)),
        # the reverse SDE reaches the distribution the teacher's scores define, the one SiD matches
        ("teacher ancestral", 32, ancestral_sampler(adapter.teacher, 32, guidance, seed=config.eval.seed)),
    ]
    final = load_generator(adapter, checkpoints[-1][1], fs)
    samplers += [
        (f"SiD student (K={K})", k, generator_sampler(final, k, K, seed=config.eval.seed, time_shift=shift))
        for k in (1, K)
    ]
    for name, steps, sampler in samplers:
        log(f"evaluating {name}, {steps} step(s), {len(prompts)} samples ...")
        row, imgs = evaluate_sampler(name, adapter, sampler, steps, prompts, metrics)
        rows.append(row)
        images[f"{name}, {steps} step{'s' if steps > 1 else ''}"] = imgs
    table = format_table(rows, metrics.alignment_name)
    grid = write_comparison_grid(
        images,
        prompts,
        out_dir / "samples_grid.png",
        title=f"{config.name}: same prompts and noise per column",
    )
    points = _curve_points(config, adapter, checkpoints, final, prompts, metrics, log, fs)
    curve = save_quality_curve(
        [p["kimg"] for p in points],
        [p["fid"] for p in points],
        [p["alignment"] for p in points],
        out_dir / "quality_vs_kimg.png",
        metrics.alignment_name,
        teacher_fid=rows[0].fid,
        teacher_alignment=rows[0].alignment,
        teacher_label="teacher, 32 Euler steps",
        title=f"{config.name}: {K}-step student over training",
    )
    (out_dir / "quality.json").write_text(
        json.dumps({"rows": [r.as_dict() for r in rows], "curve": points}, indent=1)
    )
    return RunReport(rows, table, grid, curve, points, checkpoints[-1][2])


def _curve_points(config: RunConfig, adapter, checkpoints, final, prompts, metrics, log, fs) -> list[dict]:
    """The K-step student of every checkpoint: kimg, FID and alignment (`final` is the last one's)."""
    K = config.sid.num_steps
    shift = config.sid.rollout_time_shift
    points = []
    for kimg, weights, _ in checkpoints:
        generator = final if weights == checkpoints[-1][1] else load_generator(adapter, weights, fs)
        row, _ = evaluate_sampler(
            "student",
            adapter,
            generator_sampler(generator, K, K, seed=config.eval.seed, time_shift=shift),
            K,
            prompts,
            metrics,
        )
        points.append({"kimg": kimg, "fid": row.fid, "alignment": row.alignment})
        log(f"  checkpoint {kimg:8.3f} kimg: FID {row.fid:.3f}, {metrics.alignment_name} {row.alignment:.2f}")
    return points


def log_report_to_mlflow(config: RunConfig, report: RunReport, run_id: str, export_dir: Path | None) -> str:
    """Add the table's numbers, the PNGs and the exported model to the training's MLflow run."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking.mlflow_uri)
    client = mlflow.MlflowClient()
    if not run_id:
        experiment = mlflow.set_experiment(config.tracking.experiment)
        run_id = client.create_run(experiment.experiment_id, run_name=f"{config.name}-eval").info.run_id
    for row in report.rows:
        key = f"eval_{row.name.split(' (')[0].replace(' ', '_')}_{row.steps}step"
        client.log_metric(run_id, f"{key}_fid", row.fid)
        client.log_metric(run_id, f"{key}_alignment", row.alignment)
        client.log_metric(run_id, f"{key}_seconds_per_image", row.seconds_per_image)
    for i, point in enumerate(report.curve_points):
        client.log_metric(run_id, "eval_student_fid", point["fid"], step=i)
        client.log_metric(run_id, "eval_student_alignment", point["alignment"], step=i)
    for path in (report.grid, report.curve, report.grid.parent / "quality.json"):
        if path is not None:
            client.log_artifact(run_id, str(path), artifact_path="eval")
    if export_dir is not None and export_dir.is_dir():
        client.log_artifacts(run_id, str(export_dir), artifact_path="model")
    return run_id
