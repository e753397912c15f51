"""The embedding job: encode a run's prompts once, on a Ray Data actor pool, into the cache.

`build_embedding_cache(config)` reads `data.prompts` (`sid_ray.data.prompt_sources`), cuts the
list into shards of `data.embedding_shard_size` prompts, and sends the shards not on disk yet to
`data.embed_workers` actors (a GPU each with `train.use_gpu`, else a CPU). Each actor builds the
adapter's text encoders once (no transformer, no VAE) and writes its shards itself, so embeddings
go from the encoder to storage without passing through the driver. The driver shows a progress
bar (prompts/s) and writes the manifest last: a folder without one is an unfinished build, which
the next call resumes.

Each prompt is encoded once. With `eval.every_kimg` > 0 the run's in-training evaluation prompts
(given by the caller's `eval_prompts`) are needed too: those that are held-out rows of the shards
(a run with held-out prompts evaluates on them) are read from there; only the others (the
teacher's fixed set, for a run without held-out prompts) are encoded, into an evaluation file
named by them (`embedding_cache.eval_set_file`), when it is missing. None: no file.

`ensure_embedding_cache(config)` is what the launcher calls: it returns the manifest when the
folder holds this prompt list (and this run's evaluation prompts) encoded by this model, builds
(or completes) it when it is missing or was built from other prompts, and refuses a cache of
another model. In-training evaluation of a run on the cache reads the evaluation prompts'
embeddings from it (`sid_ray.train.cached_prompts.CachedPromptEncoder`): its workers hold no text
encoder.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from sid_ray.config.schema import ConfigError, RunConfig
from sid_ray.data import embedding_cache as cache
from sid_ray.data.prompt_sources import PromptSet, is_eval_prompt, prompt_hash, read_prompt_set, split_prompts
from sid_ray.data.storage import StoragePath

ENCODERS_FILE = "encoders.json"  # max length and text-encoder identity, written by the first actor


def prompts_fingerprint(hashes: list[str], eval_fraction: float) -> str:
    """What the cache's rows are: the prompts in order and the held-out share."""
    payload = json.dumps([hashes, eval_fraction]).encode()
    return hashlib.sha256(payload).hexdigest()


def shard_plan(prompts: list[str], shard_size: int, eval_fraction: float) -> list[dict]:
    """[{index, file, start}] of the shards; a file name is its index and the hash of its prompts
    and the held-out share (which decides its rows' split)."""
    plan = []
    for index, start in enumerate(range(0, len(prompts), shard_size)):
        part = [prompt_hash(p) for p in prompts[start : start + shard_size]]
        digest = hashlib.sha256(json.dumps([part, eval_fraction]).encode()).hexdigest()[:12]
        plan.append({"index": index, "file": f"shard-{index:05d}-{digest}.parquet", "start": start})
    return plan


def count_truncated(adapter, prompts: list[str]) -> Counter:
    """Prompts longer than what each tokenizer keeps ({tokenizer part: count}). CLIP keeps its own
    77 tokens; the long-text encoder (T5, Gemma) the adapter's max sequence length."""
    limit = adapter.text_max_length
    counts = Counter()
    for name, tokenizer in getattr(adapter, "components", {}).items():
        if not name.startswith("tokenizer") or tokenizer is None:
            continue
        keep = tokenizer.model_max_length
        if limit and "CLIP" not in type(tokenizer).__name__:
            keep = min(keep, limit)
        lengths = [len(ids) for ids in tokenizer(prompts, truncation=False)["input_ids"]]
        counts[name] += sum(n > keep for n in lengths)
    return counts


class ShardEncoder:
    """Ray Data actor UDF: builds the text encoders once; each row of a batch is a file to encode
    and write, relative to the cache folder: a shard (its rows split by hash, its truncation counts
    in its metadata) or an evaluation file (the evaluation prompts that are not held-out rows of
    the shards, every row "eval"). Returns per file its rows and seconds (the driver's progress
    bar)."""

    def __init__(self, config: RunConfig, folder: str):
        import torch

        from sid_ray.models.registry import adapter_class

        use_gpu = config.train.use_gpu and torch.cuda.is_available()
        # the text encoders alone where the family allows: no transformer or VAE in the actor
        self.adapter = adapter_class(config.model.name).text_encoder(config.model)
        if use_gpu:
            self.adapter.to("cuda")
        self.folder, self.data = StoragePath(folder), config.data

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, seconds = [], []
        for file, split, prompts in zip(batch["file"], batch["split"], batch["prompts"], strict=True):
            start = time.perf_counter()
            prompts = [str(p) for p in prompts]
            self._write(str(file), prompts, str(split))
            rows.append(len(prompts))
            seconds.append(time.perf_counter() - start)
        return {"file": batch["file"], "rows": np.asarray(rows), "seconds": np.asarray(seconds)}

    def _write(self, file: str, prompts: list[str], split: str = "") -> None:
        import torch

        size, parts = self.data.embed_batch_size, []
        with torch.no_grad():
            for start in range(0, len(prompts), size):
                parts.append(self.adapter.encode_prompts(prompts[start : start + size]))
        tensors = {k: torch.cat([p.tensors[k] for p in parts]) for k in parts[0].tensors}
        hashes = [prompt_hash(p) for p in prompts]
        fraction = self.data.eval_prompt_fraction
        splits = [split or ("eval" if is_eval_prompt(p, fraction) else "train") for p in prompts]
        if not (self.folder / ENCODERS_FILE).is_file():
            cache.write_null(self.folder, parts[0].null)
            identity = {
                "max_length": self.adapter.text_max_length,
                "encoders": encoder_identity(self.adapter),
            }
            (self.folder / ENCODERS_FILE).write_text(json.dumps(identity, indent=1))
        info = {
            "rows": len(prompts),
            "train_rows": splits.count("train"),
            "truncated": dict(count_truncated(self.adapter, prompts)),
        }
        table = cache.rows_table(hashes, prompts, splits, tensors, info)
        cache.write_table_atomically(table, self.folder / file)


def encoder_identity(adapter) -> dict:
    """{text encoder part: class, config hash, parameter count, hash of its first weight tensor
    (the token embedding)}: enough to tell two checkpoints of one architecture apart cheaply."""
    import torch

    out = {}
    for name, module in getattr(adapter, "components", {}).items():
        if not name.startswith("text_encoder") or not isinstance(module, torch.nn.Module):
            continue
        config = getattr(module, "config", None)
        config_text = config.to_json_string() if hasattr(config, "to_json_string") else repr(config)
        first = next(module.parameters()).detach().float().cpu().contiguous()
        out[name] = {
            "class": type(module).__name__,
            "config_sha": hashlib.sha256(config_text.encode()).hexdigest()[:16],
            "parameters": sum(p.numel() for p in module.parameters()),
            "weights_sha": hashlib.sha256(first.numpy().tobytes()).hexdigest()[:16],
        }
    return out


def run_prompt_set(config: RunConfig) -> PromptSet:
    """`data.prompts` read and cleaned, or the teacher's own / the built-in list when it is empty."""
    if config.data.prompts:
        return read_prompt_set(config.data)
    from sid_ray.data.prompts import BUILTIN_PROMPTS
    from sid_ray.models.registry import default_prompts

    prompts = list(default_prompts(config.model) or BUILTIN_PROMPTS)
    return PromptSet(prompts, {"files": 0, "lines": len(prompts), "kept": len(prompts)})


def cache_folder(config: RunConfig) -> StoragePath:
    if not config.data.embedding_cache:
        raise ConfigError("data.embedding_cache: empty; set the folder the embeddings are written to")
    return StoragePath(config.data.embedding_cache)


# the distinct prompts of a run's in-training evaluation set, given its held-out prompts: the
# eval layer's `eval_prompt_list`, passed in by the callers above data (launcher, jobs/embed.py)
EvalPrompts = Callable[[RunConfig, list[str]], list[str]]


def build_embedding_cache(
    config: RunConfig,
    prompt_set: PromptSet | None = None,
    log: Callable[[str], None] = print,
    eval_prompts: EvalPrompts | None = None,
) -> dict:
    """Encode `data.prompts` into `data.embedding_cache` (shards on disk are kept); the manifest.

    A manifest of another model is refused before anything is read or encoded."""
    folder = cache_folder(config)
    old = cache.read_manifest(folder)
    if old is not None:
        cache.check_model(old, config.model, folder)
    prompt_set = prompt_set or run_prompt_set(config)
    prompts = prompt_set.prompts
    plan = shard_plan(prompts, config.data.embedding_shard_size, config.data.eval_prompt_fraction)
    evaluates = config.eval.every_kimg > 0  # toy teachers encode no fixed evaluation set
    evaluation, extra = _evaluation_prompts(config, prompts, eval_prompts) if evaluates else ([], [])
    eval_file = cache.eval_set_file(extra) if extra else None  # the shards hold the others
    for sub in (cache.SHARDS_DIR, cache.EVAL_DIR) if eval_file else (cache.SHARDS_DIR,):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    size = config.data.embedding_shard_size
    tasks = [
        {
            "file": f"{cache.SHARDS_DIR}/{s['file']}",
            "split": "",
            "prompts": prompts[s["start"] : s["start"] + size],
        }
        for s in plan
        if not (folder / cache.SHARDS_DIR / s["file"]).is_file()
    ]
    pending_shards = len(tasks)
    if eval_file and not (folder / eval_file).is_file():
        tasks.append({"file": eval_file, "split": "eval", "prompts": extra})
    log(
        f"[embed] {prompt_set.summary()}; {len(plan)} shard(s), {len(plan) - pending_shards} already "
        f"written; encoding {pending_shards} shard(s) and {len(tasks) - pending_shards} evaluation file(s) "
        f"({len(evaluation)} evaluation prompts, {len(evaluation) - len(extra)} of them held-out rows "
        f"of the shards) on {config.data.embed_workers} actor(s) -> {folder}"
    )
    start = time.perf_counter()
    encoded = _encode(config, folder, tasks)
    seconds = time.perf_counter() - start
    manifest = _manifest(config, folder, prompt_set, plan, seconds, encoded)
    manifest["eval_set"] = _eval_set_record(evaluation, extra, eval_file) if evaluates else None
    _remove_stale_shards(folder, plan)
    (folder / cache.MANIFEST).write_text(json.dumps(manifest, indent=1))
    rate = f", {encoded / seconds:.3g} prompts/s" if encoded else ""
    log(
        f"[embed] {encoded} prompt(s) encoded in {seconds:.1f} s{rate}; {manifest['train_count']} "
        f"train / {manifest['eval_count']} eval; over the tokenizers' limit: {manifest['truncated']}"
    )
    return manifest


def _encode(config: RunConfig, folder: StoragePath, tasks: list[dict]) -> int:
    """Run the pending files ({file, split, prompts}) through the actor pool; the number of
    prompts encoded."""
    import ray.data
    from tqdm import tqdm

    if not tasks:
        return 0
    resources = {"num_gpus": 1} if config.train.use_gpu else {"num_cpus": 1}
    ds = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        ShardEncoder,
        fn_constructor_kwargs={"config": config, "folder": str(folder)},
        compute=ray.data.ActorPoolStrategy(size=min(config.data.embed_workers, len(tasks))),
        batch_size=1,
        batch_format="numpy",
        **resources,
    )
    total = sum(len(t["prompts"]) for t in tasks)
    with tqdm(total=total, unit="prompt", desc="embedding", file=sys.stderr, mininterval=1.0) as bar:
        for row in ds.iter_rows():
            bar.update(int(row["rows"]))
    return total


def _manifest(
    config: RunConfig,
    folder: StoragePath,
    prompt_set: PromptSet,
    plan: list[dict],
    seconds: float,
    encoded: int,
) -> dict:
    """The manifest of a complete cache, its counts summed from the shards' own records."""
    infos = [cache.read_shard_info(folder / cache.SHARDS_DIR / s["file"]) for s in plan]
    truncated = Counter()
    for info in infos:
        truncated.update(info.get("truncated", {}))
    identity = json.loads((folder / ENCODERS_FILE).read_text())
    first = folder / cache.SHARDS_DIR / plan[0]["file"]
    hashes = [prompt_hash(p) for p in prompt_set.prompts]
    train = sum(i["train_rows"] for i in infos)
    return {
        "version": cache.CACHE_VERSION,
        **cache.model_identity(config.model),
        **identity,
        "layout": cache.read_layout(first),
        "sources": config.data.prompts,
        "prompts_sha": prompts_fingerprint(hashes, config.data.eval_prompt_fraction),
        "eval_prompt_fraction": config.data.eval_prompt_fraction,
        "count": len(hashes),
        "train_count": train,
        "eval_count": len(hashes) - train,
        "read_counts": prompt_set.counts,
        "truncated": dict(truncated),
        "shards": [{"file": s["file"], "rows": i["rows"]} for s, i in zip(plan, infos, strict=True)],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 3),
        "encoded": encoded,  # prompts this build encoded (shards and evaluation file)
        "prompts_per_s": round(encoded / seconds, 3) if encoded else None,
    }


def _remove_stale_shards(folder: StoragePath, plan: list[dict]) -> None:
    """Shards of an earlier prompt list that this one does not use (a changed source)."""
    keep = {s["file"] for s in plan}
    for path in (folder / cache.SHARDS_DIR).glob("*.parquet"):
        if path.name not in keep:
            path.unlink()


def _eval_set_record(evaluation: list[str], extra: list[str], eval_file: str | None) -> dict:
    """The manifest's word on where the run's evaluation prompts are."""
    return {
        "prompts": len(evaluation),  # the distinct prompts of the run's evaluation set
        "from_shards": len(evaluation) - len(extra),  # read from the shards' held-out rows
        "file": eval_file,  # the others' embeddings, or None when there are none
        "file_rows": len(extra),
    }


def _evaluation_prompts(
    config: RunConfig, prompts: list[str], eval_prompts: EvalPrompts | None
) -> tuple[list[str], list[str]]:
    """(the distinct prompts of the run's evaluation set, those of them that are not held-out rows
    of the shards: what the evaluation file encodes, in the set's order)."""
    if eval_prompts is None:
        raise ValueError(
            "eval.every_kimg > 0: the embedding cache holds the evaluation prompts too; pass "
            "eval_prompts=sid_ray.eval.generator_eval.eval_prompt_list"
        )
    held_out = split_prompts(prompts, config.data.eval_prompt_fraction)[1]
    evaluation = eval_prompts(config, held_out)
    in_shards = set(held_out)
    return evaluation, [p for p in evaluation if p not in in_shards]


def ensure_embedding_cache(
    config: RunConfig, log: Callable[[str], None] = print, eval_prompts: EvalPrompts | None = None
) -> dict:
    """The manifest of `data.embedding_cache` for this run's prompts: used as it is when it
    matches, completed or re-encoded when it is missing or built from other prompts, refused
    (ConfigError naming both models) when built for another model."""
    folder = cache_folder(config)
    manifest = cache.read_manifest(folder)
    if manifest is not None:
        cache.check_model(manifest, config.model, folder)
    prompt_set = run_prompt_set(config)
    hashes = [prompt_hash(p) for p in prompt_set.prompts]
    evaluates = config.eval.every_kimg > 0
    if manifest is not None and manifest["prompts_sha"] == prompts_fingerprint(
        hashes, config.data.eval_prompt_fraction
    ):
        extra = _evaluation_prompts(config, prompt_set.prompts, eval_prompts)[1] if evaluates else []
        if not extra or (folder / cache.eval_set_file(extra)).is_file():  # evaluation reads it
            log(f"[embed] cache hit: {manifest['train_count']} training prompts in {folder}")
            return manifest
        log(f"[embed] {folder} holds this run's prompts but not its evaluation prompts: encoding them")
        return build_embedding_cache(config, prompt_set, log, eval_prompts)
    if manifest is not None:
        log(f"[embed] {folder} was encoded from other prompts: re-encoding what changed")
        (folder / cache.MANIFEST).unlink()
    return build_embedding_cache(config, prompt_set, log, eval_prompts)
