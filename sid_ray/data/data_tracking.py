"""The data stages' counts in MLflow: what was read, dropped, truncated or skipped, by kind.

`jobs/embed.py` logs its own run (the counts, the cache's identity as params, the manifest as an
artifact); the training launcher adds the counts of the data it trained on to the run's MLflow run
after training (`log_counts` with that run's id). Counts are metrics named `data_<group>_<kind>`
(`data_read_duplicate`, `data_truncated_tokenizer_2`, `data_pairs_skipped_truncated tar member`
made safe), logged at a step, so a resumed run's later counts stand beside the first ones.
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
