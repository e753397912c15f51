"""Prompts/s of the embedding job, and how long training waits on its cached-embedding stream.

1. `build_embedding_cache` on `--prompts` synthetic prompts: Ray Data reads them, an actor pool
   of `--workers` text encoders writes the parquet shards (wall clock, actor start included),
   beside the same encoders called in-process (`encode_prompts`, no Ray) for reference.
2. Training from that cache: the single-process SiD iterations (`sid_ray.train.loop.iterations`)
   fed by the Ray Data per-rank stream of the cache (`RankEmbeddingStream`, the rows a Ray worker
   gets from `get_dataset_shard`, prefetching 2 batches as `rank_batches` does): the time spent in
   `next(batches)` as a share of the time per iteration.
3. `--t5-xxl`: the full-size T5-XXL encoder (FLUX/SD3's text_encoder_2: 24 layers, d_model 4096)
   with random weights on `--device`, 512 tokens a prompt: prompts/s (a GPU figure; 4.7 B
   parameters need ~10 GB in bf16).

    python benchmarks/embed_throughput.py                      # tiny FLUX on this machine's CPU
    python benchmarks/embed_throughput.py --t5-xxl --device cuda --t5-batch 64
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path

import torch

ADJECTIVES = ["red", "tiny", "ancient", "glowing", "wooden", "frozen", "neon", "quiet"]
NOUNS = ["fox", "lighthouse", "teapot", "city", "forest", "robot", "boat", "garden"]
STYLES = ["a photo of", "a watercolor of", "an oil painting of", "a sketch of"]


def synthetic_prompts(count: int) -> list[str]:
    combos = itertools.product(STYLES, ADJECTIVES, NOUNS, range(math.ceil(count / 256)))
    return [f"{s} a {a} {n}, variation {i}" for s, a, n, i in itertools.islice(combos, count)]


def run_config(args, folder: Path, teacher: Path, prompts_file: Path):
    from sid_ray.config import load_config

    return load_config(
        None,
        [
            "model.name=flux-tiny",
            f"model.path={teacher}",
            "model.resolution=16",
            f"data.prompts={prompts_file}",
            f"data.embedding_cache={folder / 'cache'}",
            f"data.embed_workers={args.workers}",
            f"data.embed_batch_size={args.embed_batch}",
            f"data.embedding_shard_size={args.shard_size}",
            f"output_dir={folder / 'runs'}",
            f"train.batch_size={args.train_batch}",
            f"train.micro_batch_size={args.train_batch}",
            "train.total_kimg=1",
        ],
    )


def embedding_job(config, prompts: list[str]) -> dict:
    from sid_ray.data.embedding_build import build_embedding_cache
    from sid_ray.models.registry import build_adapter

    start = time.perf_counter()
    manifest = build_embedding_cache(config, log=lambda line: None)
    wall = time.perf_counter() - start
    adapter = build_adapter(config)
    size = config.data.embed_batch_size
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), size):
            adapter.encode_prompts(prompts[i : i + size])
    in_process = time.perf_counter() - start
    return {
        "prompts": manifest["count"],
        "job_prompts_per_s": manifest["count"] / wall,
        "job_seconds": wall,
        "in_process_prompts_per_s": len(prompts) / in_process,
    }


def stream_wait_share(config, iterations: int) -> dict:
    """Share of each iteration spent waiting for the next batch of the cached-embedding stream."""
    import ray.data

    from sid_ray.data.embedding_stream import RankEmbeddingStream
    from sid_ray.data.prompts import PROMPT_STREAM
    from sid_ray.train.cached_prompts import stream_prompts
    from sid_ray.train.local import _trainee
    from sid_ray.train.loop import iterations as run_iterations

    batch = config.train.batch_size
    stream = RankEmbeddingStream(config.data.embedding_cache, config.data.shuffle_seed, batch)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    rows = ray.data.range(iterations * batch)
    shard = stream.configure({PROMPT_STREAM: rows}, 1, None, None)[0][PROMPT_STREAM]
    to_prompts = stream_prompts(config)
    source = iter(shard.iter_batches(batch_size=batch, batch_format="numpy", prefetch_batches=2))
    waits: list[float] = []

    def timed():
        while True:
            start = time.perf_counter()
            rows = next(source)
            waits.append(time.perf_counter() - start)
            yield to_prompts(rows), None

    trainee = _trainee(config, torch.device("cpu"))
    times, last = [], time.perf_counter()
    for _ in run_iterations(config, trainee, timed(), 0, iterations):
        now = time.perf_counter()
        times.append(now - last)
        last = now
    steady = slice(2, None)  # the first iterations include the stream's start and warm-up
    wait, step = sum(waits[steady]), sum(times[steady])
    return {
        "iterations": iterations,
        "s_per_iteration": step / len(times[steady]),
        "wait_s_per_iteration": wait / len(times[steady]),
        "wait_share": wait / step,
        "first_batch_wait_s": waits[0],
    }


def t5_xxl(args) -> dict:
    """prompts/s of a random-weight T5-XXL encoder (FLUX.1-dev's text_encoder_2) at 512 tokens."""
    from transformers import T5Config, T5EncoderModel

    # t5-v1_1-xxl's encoder (gated GELU: read at construction, so it must be passed here)
    config = T5Config(
        d_model=4096,
        d_ff=10240,
        d_kv=64,
        num_heads=64,
        num_layers=24,
        vocab_size=32128,
        feed_forward_proj="gated-gelu",
    )
    device = torch.device(args.device)
    with device:
        model = T5EncoderModel(config).to(torch.bfloat16).eval()
    ids = torch.randint(0, 32128, (args.t5_batch, 512), device=device)
    with torch.no_grad():
        for _ in range(2):
            model(input_ids=ids)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.t5_iterations):
            model(input_ids=ids)
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    rate = args.t5_batch * args.t5_iterations / seconds
    # model FLOPs: 2 per weight per token (the embedding lookup is no matmul) + attention's QK^T, PV
    per_prompt = 2 * (params - 32128 * 4096) * 512 + 24 * 4 * 512 * 512 * 4096
    return {
        "t5_xxl_parameters": params,
        "batch": args.t5_batch,
        "t5_xxl_prompts_per_s": rate,
        "model_tflop_per_s": rate * per_prompt / 1e12,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=2048)
    p.add_argument("--workers", type=int, default=1, help="encode actors (data.embed_workers)")
    p.add_argument("--embed-batch", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--t5-xxl", action="store_true", help="only the full-size T5-XXL measurement")
    p.add_argument("--t5-batch", type=int, default=16)
    p.add_argument("--t5-iterations", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.t5_xxl:
        print(json.dumps(t5_xxl(args), indent=1))
        return
    import ray

    from sid_ray.models.tiny.flux import build_tiny_flux

    torch.set_num_threads(1)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        teacher = build_tiny_flux(folder / "flux")
        prompts = synthetic_prompts(args.prompts)
        (folder / "prompts.txt").write_text("\n".join(prompts) + "\n")
        config = run_config(args, folder, teacher, folder / "prompts.txt")
        result = {"model": "flux-tiny (CPU)", **embedding_job(config, prompts)}
        result.update(stream_wait_share(config, args.iterations))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
