"""The data stages' counts in MLflow: what was read, dropped, truncated or skipped, by kind.

`jobs/embed.py` logs its own run (the counts, the cache's identity as params, the manifest as an
artifact). A training run's rank 0 logs the counts of the data it trains on (what the launcher
read, or the embedding cache's manifest: prompts read, dropped by kind, truncated, held out) into
the run's MLflow run as soon as it opens it (`log_stage`), at the iteration it starts from, and
the driver prints them in one line (`summary_line`) before the first progress line. Counts are
metrics named `data_<group>_<kind>` (`data_read_duplicate`, `data_truncated_tokenizer_2`,
`data_pairs_skipped_truncated tar member` made safe), logged at a step, so a resumed run's later
counts stand beside the first ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")


def count_metrics(groups: Mapping[str, Mapping]) -> dict[str, float]:
    """{group: {kind: count}} -> {data_<group>_<kind>: count} (numbers only, names MLflow takes)."""
    out = {}
    for group, counts in groups.items():
        for kind, value in (counts or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[_UNSAFE.sub("_", f"data_{group}_{kind}")] = float(value)
    return out


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def log_counts(
    uri: str, run_id: str, groups: Mapping[str, Mapping], step: int = 0, artifacts: Mapping | None = None
) -> None:
    """Log `groups`' counts (and `artifacts`, {file name: JSON-able dict}) into an existing run."""
    from mlflow.entities import Metric

    client = _client(uri)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, v in count_metrics(groups).items()]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    for name, content in (artifacts or {}).items():
        client.log_dict(run_id, dict(content), f"data/{name}")


def summary_line(groups: Mapping[str, Mapping]) -> str:
    """The counts in one console line: `data: read files 1, lines 7, kept 4, duplicate 1; ...`."""
    parts = []
    for group, counts in groups.items():
        numbers = [f"{k} {v:g}" for k, v in (counts or {}).items() if isinstance(v, int | float)]
        if numbers:
            parts.append(f"{group} " + ", ".join(numbers))
    return "data: " + ("; ".join(parts) or "no counts")


def log_stage(tracker, loop_config: Mapping, step: int) -> None:
    """In rank 0 of a training run, once its MLflow run is open: the launcher's data counts
    (`loop_config["data_counts"]`, and its `data_artifacts` files) at iteration `step`."""
    if tracker is None:
        return
    groups, artifacts = loop_config.get("data_counts") or {}, loop_config.get("data_artifacts") or {}
    log_counts(tracker.config.tracking.mlflow_uri, tracker.run_id, groups, step, artifacts)


def start_data_run(
    uri: str, experiment: str, run_name: str, params: Mapping[str, object], tags: Mapping
) -> str:
    """A new, finished-on-return run of a data job in `experiment`; its id."""
    from mlflow.entities import Param, RunTag

    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    client.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    return run.info.run_id


def finish_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    _client(uri).set_terminated(run_id, status)


def log_embedding_job(uri: str, experiment: str, run_name: str, manifest: Mapping, folder: str) -> str:
    """The embedding job's MLflow run: the cache's identity as params; read counts, truncations,
    rows and prompts/s as metrics; the manifest as an artifact. Its run id."""
    params = {
        "model": manifest.get("model"),
        "model_path": manifest.get("model_path"),
        "dtype": manifest.get("dtype"),
        "max_length": manifest.get("max_length"),
        "sources": manifest.get("sources"),
        "embedding_cache": folder,
        "eval_prompt_fraction": manifest.get("eval_prompt_fraction"),
    }
    run_id = start_data_run(uri, experiment, run_name, params, {"sid_ray.stage": "embed"})
    rows = {k: manifest.get(k) for k in ("count", "train_count", "eval_count", "prompts_per_s")}
    rows["shards"] = len(manifest.get("shards", []))
    groups = {
        "read": manifest.get("read_counts", {}),
        "truncated": manifest.get("truncated", {}),
        "cache": rows,
    }
    log_counts(uri, run_id, groups, artifacts={"embedding_manifest.json": manifest})
    finish_run(uri, run_id)
    return run_id
