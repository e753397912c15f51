"""Throughput, memory and MFU of one SiD iteration at full size, through the product path.

For each teacher x LoRA mode x resolution (x batch), this script runs
1. the product: `sid_ray.train.launcher.launch` -> Ray Train (one worker per GPU) -> DeepSpeed
   engines -> `distill_step`, on the released architecture with random weights built on the GPU
   (`model.init=random`; tiny text encoders with the real output widths, 512 T5 tokens for FLUX);
2. the baseline, the same iteration as a user would write it plainly (`plain_sid_iteration`):
   one GPU, PyTorch, T plus two copies with one peft LoRA adapter each (F, G), torch Adam,
   diffusers' gradient checkpointing, in the same process after the Ray run;
and prints s/iteration, img/s per GPU, peak memory and MFU for both, and their ratio.

MFU counts model FLOPs, not hardware FLOPs (recomputation from checkpointing is not counted):
- one image-forward = sum over the transformer's Linear layers of 2 x rows x in x out (each
  token's matmul parameters x 2 x tokens; modulation layers see one row per image) + 4 x Lq x Lk
  x width for every attention call (QK^T and PV; FLUX: 4 x 57 blocks x tokens^2 x 3072), both
  counted on a meta-device forward of the real architecture (`forward_flops`);
- one iteration = (2k + 9) image-forwards per image, from `sid_ray.sid.step.distill_step`:
  F's update rolls out k G forwards (no grad) and trains F (1 forward + 2 for its backward);
  G's update rolls out k - 1 forwards without and 1 with grad (3), and runs T and F forward with
  a backward through their inputs only (2 each): (k + 3) + (k + 6);
- MFU = sum over timed iterations of (2k_i + 9) x forward FLOPs x images per GPU / time / peak,
  peak = 989 TFLOP/s (H200 / H100 SXM dense bf16; `--peak-tflops` for others).

    python benchmarks/sid_step.py --model flux-dev --modes shared_base --resolutions 512 1024 \\
        --batches 4 2 --iterations 5 --warmup 2 --baseline
    python benchmarks/sid_step.py --model flux-tiny --device cpu --resolutions 32 --batches 2  # CPU smoke

Full mode needs three full copies (F, G, T): at FLUX size that is several GPUs under ZeRO-3.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sid_ray.config.io import apply_overrides
from sid_ray.config.schema import RunConfig
from sid_ray.models.registry import build_adapter
from sid_ray.sid.rollout import draw_num_steps
from sid_ray.train.attention import select_attention_backend

H200_PEAK_TFLOPS = 989.0  # dense bf16 (the 1,979 figure counts 2:4 sparsity)
PROMPT_WORDS = "a photo of red blue small large cat dog tree house city river at night in snow".split()


@dataclass
class Measurement:
    path: str  # "product" or "baseline"
    model: str
    mode: str
    policy: str
    resolution: int
    images_per_gpu: int
    gpus: int
    s_per_iteration: float
    img_per_s_per_gpu: float
    peak_gib: float
    mfu: float
    forward_tflop: float
    mean_k: float
    # img/s per GPU rescaled from the timed iterations' k to E[k] = (K + 1) / 2 by the (2k + 9)
    # forward count: a few timed iterations draw a k mix lighter or heavier than a run's
    img_per_s_at_expected_k: float = 0.0
    compile: str = "off"  # train.compile of the product; the baseline runs eagerly, as written plainly


# --- model FLOPs -------------------------------------------------------------------------------
def forward_flops(config: RunConfig) -> float:
    """FLOPs of one image-forward of the teacher's transformer (see the module docstring)."""
    with torch.device("meta"):
        adapter = build_adapter(_plain_teacher_config(config))
    transformer, flops = adapter.transformer, [0.0]

    def count_linear(module, inputs, output):
        rows = inputs[0].numel() // module.in_features
        flops[0] += 2 * rows * module.in_features * module.out_features

    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counted_sdpa(*args, **kwargs):
        # (B, heads, Lq, d) x (B, heads, Lk, d): QK^T and PV, 2 FLOPs per multiply-add each
        q, k = (kwargs.pop(n) if n in kwargs else None for n in ("query", "key"))
        q, k, *rest = ([q, k] if q is not None else []) + list(args)
        flops[0] += 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
        return sdpa(q, k, *rest, **kwargs)

    hooks = [
        m.register_forward_hook(count_linear) for m in transformer.modules() if isinstance(m, torch.nn.Linear)
    ]
    with torch.no_grad():  # the tiny text encoders are real, on the CPU (random_weights.tiny_parts)
        cond = _meta_conditioning(adapter, 1)
    torch.nn.functional.scaled_dot_product_attention = counted_sdpa
    try:
        with torch.device("meta"), torch.no_grad():
            x = torch.zeros(1, *adapter.latent_shape, dtype=adapter.dtype)
            adapter.teacher.velocity(x, torch.full((1,), 0.5), cond)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
        for hook in hooks:
            hook.remove()
    return flops[0]


def _plain_teacher_config(config: RunConfig) -> RunConfig:
    """The run's teacher as one plain transformer: no LoRA (its FLOPs are under 1% at rank 64),
    no checkpointing."""
    lora = dataclasses.replace(config.model.lora, mode="full")
    model = dataclasses.replace(config.model, lora=lora, gradient_checkpointing=False)
    return dataclasses.replace(config, model=model)


def _meta_conditioning(adapter, batch: int):
    """Prompt embeddings of the real widths and lengths, as shapes only (on the meta device)."""
    return adapter.encode_prompts(["a"] * batch).to("meta", adapter.dtype)


# --- the product path ----------------------------------------------------------------------------
def product_config(
    args,
    mode: str,
    resolution: int,
    batch: int,
    gpus: int,
    out: Path,
    policy: str = "all",
    compiled: str = "off",
) -> RunConfig:
    config = RunConfig()
    config.name = f"{args.model}-{mode}-{resolution}-b{batch}-{policy}-compile-{compiled}"
    config.output_dir = str(out / "runs")
    iterations = args.warmup + args.iterations
    overrides = [
        f"model.name={args.model}",
        "model.init=random",
        "model.dtype=bfloat16",
        f"model.resolution={resolution}",
        f"model.gradient_checkpointing={str(args.checkpointing).lower()}",
        f"model.checkpoint_policy={policy}",
        f"model.lora.mode={mode}",
        f"model.lora.rank={args.rank}",
        f"model.lora.alpha={args.rank}",
        f"sid.teacher_guidance={args.teacher_guidance}",
        f"train.use_gpu={str(args.device == 'cuda').lower()}",
        f"train.num_workers={gpus}",
        f"train.micro_batch_size={batch}",
        f"train.batch_size={batch * gpus}",
        f"train.total_kimg={iterations * batch * gpus / 1000}",
        f"train.checkpoint_every_kimg={10 * iterations * batch * gpus / 1000}",
        "train.log_every=1",
        "train.mixed_precision=bf16",
        "train.export_pipeline=false",
        "train.generator_in_checkpoints=never",
        "train.keep_checkpoints=1",
        "train.max_failures=0",
        f"train.attention_backend={args.attention_backend}",
        f"train.compile={compiled}",
        f"data.prompts={_prompt_file(out)}",
        *args.set,
    ]
    return apply_overrides(config, overrides)


def _prompt_file(out: Path) -> Path:
    path = out / "prompts.txt"
    if not path.exists():
        g = torch.Generator().manual_seed(0)
        lines = [
            " ".join(PROMPT_WORDS[i] for i in torch.randint(len(PROMPT_WORDS), (8,), generator=g))
            for _ in range(4096)
        ]
        path.write_text("\n".join(lines) + "\n")
    return path


def measure_product(config: RunConfig, args, forward: float, gpus: int) -> Measurement:
    from sid_ray.train.launcher import launch

    result = launch(config, show_progress=args.verbose)
    timed = [row for row in result.rows if row["iteration"] > args.warmup]
    if len(timed) < args.iterations:
        raise RuntimeError(f"{config.name}: {len(timed)} timed rows of {args.iterations}: {result.rows}")
    seconds = [row["s_per_iteration"] for row in timed]
    ks = [int(row["k"]) for row in timed]
    peak = max((row.get("gpu_mem_peak_gb", 0.0) for row in result.rows), default=0.0)
    return _measurement("product", config, args, forward, gpus, seconds, ks, peak)


def checkpointing_label(model) -> str:
    """off / all / frozen / frozen+<share of the trained network's blocks also recomputed>."""
    if not model.gradient_checkpointing:
        return "off"
    share = model.checkpoint_trained_share if model.checkpoint_policy == "frozen" else 0
    return f"{model.checkpoint_policy}+{share:g}" if share else model.checkpoint_policy


def _measurement(path, config, args, forward, gpus, seconds, ks, peak) -> Measurement:
    per_gpu = config.train.batch_size // gpus
    total_time = sum(seconds)
    flops = sum((2 * k + 9) * forward * per_gpu for k in ks)
    return Measurement(
        path=path,
        model=config.model.name,
        mode=config.model.lora.mode if path == "product" else "peft copies",
        policy=checkpointing_label(config.model) if path == "product" else "all (diffusers)",
        resolution=config.model.resolution,
        images_per_gpu=per_gpu,
        gpus=gpus,
        s_per_iteration=statistics.median(seconds),
        img_per_s_per_gpu=per_gpu * len(seconds) / total_time,
        peak_gib=peak,
        mfu=flops / total_time / (args.peak_tflops * 1e12),
        forward_tflop=forward / 1e12,
        mean_k=sum(ks) / len(ks),
        img_per_s_at_expected_k=at_expected_k(per_gpu * len(seconds) / total_time, ks, config.sid.num_steps),
        compile=config.train.compile if path == "product" else "off",
    )


def at_expected_k(img_per_s: float, ks: list[int], num_steps: int) -> float:
    """`img_per_s` measured over iterations of these k, rescaled to k's mean over a run."""
    timed = sum(2 * k + 9 for k in ks) / len(ks)
    return img_per_s * timed / (2 * (num_steps + 1) / 2 + 9)


# --- the plain baseline -------------------------------------------------------------------------
def measure_baseline(config: RunConfig, args, forward: float, gpus: int = 1) -> Measurement:
    """The same iteration written plainly on one GPU (see `plain_sid_iteration`)."""
    device = torch.device(args.device)
    # torch's own kernel choice, as a plain user gets it; --attention-backend is the product's
    # (its workers apply it): eager cuDNN attention crashes in FLUX's single blocks' backward
    # without the product's gradient-layout fix (sid_ray/train/attention.py)
    select_attention_backend("auto", device)
    plain = _plain_teacher_config(config)
    with torch.device(device):
        adapter = build_adapter(plain)
    nets = plain_networks(adapter, args.rank, config.model.gradient_checkpointing)
    optimizers = {role: torch.optim.Adam(nets[role].parameters(), lr=1e-6) for role in ("fake", "generator")}
    cond = adapter.encode_prompts(["a photo"] * config.train.micro_batch_size).to(device, adapter.dtype)
    seconds, ks = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for iteration in range(args.warmup + args.iterations):
        k = draw_num_steps(config.sid.num_steps, config.train.seed, iteration)
        _sync(device)
        start = time.perf_counter()
        plain_sid_iteration(nets, optimizers, cond, adapter.latent_shape, k, config)
        _sync(device)
        if iteration >= args.warmup:
            seconds.append(time.perf_counter() - start)
            ks.append(k)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return _measurement("baseline", config, args, forward, 1, seconds, ks, peak)


def plain_networks(adapter, rank: int, checkpointing: bool) -> dict:
    """T = the transformer; F and G = copies of it with one peft LoRA adapter each (peft's usual
    way; one base with two adapters breaks diffusers' checkpointing, which recomputes a block
    with whatever adapter is active at backward time); diffusers' own checkpointing on all three."""
    from peft import LoraConfig

    teacher = adapter.transformer.requires_grad_(False)
    nets = {"teacher": adapter.velocity_model(teacher, "teacher")}
    for role in ("fake", "generator"):
        module = copy.deepcopy(teacher)
        module.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(adapter.lora_targets())))
        nets[role] = adapter.velocity_model(module, role)
    for net in nets.values():
        if checkpointing:
            net.transformer.enable_gradient_checkpointing()
    return nets


def plain_sid_iteration(nets, optimizers, cond, latent_shape, k, config) -> None:
    """One SiD iteration as a user writes it: F's update, then G's (SID.md 4)."""
    sid, batch = config.sid, config.train.micro_batch_size
    teacher, fake, generator = nets["teacher"], nets["fake"], nets["generator"]
    dtype = generator.dtype
    device = next(generator.parameters()).device
    times = [1 - i / sid.num_steps for i in range(sid.num_steps)]

    def v(net, x, t, scale):
        t = torch.full((batch,), t, device=device) if isinstance(t, float) else t
        return net.guided_velocity(x, t, cond, scale)

    def rollout(grad_last: bool):
        x = torch.randn(batch, *latent_shape, device=device, dtype=dtype)
        for i in range(k):
            last = i == k - 1
            with torch.set_grad_enabled(grad_last and last):
                x0 = x - times[i] * v(generator, x, times[i], 1.0)
            if not last:
                t_next = times[i + 1]
                x = (1 - t_next) * x0.detach() + t_next * torch.randn_like(x0)
        return x0

    def noised(x0):
        t = torch.sigmoid(torch.randn(batch, device=device) * sid.time_law_std + sid.time_law_mean)
        eps = torch.randn_like(x0)
        tt = t.view(-1, *[1] * (x0.ndim - 1)).to(dtype)
        return (1 - tt) * x0 + tt * eps, t.to(dtype), eps

    # F: fit the fake score on G's samples
    x_g = rollout(grad_last=False).detach()
    x_t, t, eps = noised(x_g)
    loss_f = ((v(fake, x_t, t, sid.fake_guidance_train) - (eps - x_g)) ** 2).mean()
    optimizers["fake"].zero_grad(set_to_none=True)
    loss_f.backward()
    optimizers["fake"].step()
    # G: through T and the frozen F, the SiD loss
    x_g = rollout(grad_last=True)
    x_t, t, eps = noised(x_g)
    tt = t.view(-1, *[1] * (x_g.ndim - 1))
    fake_params = [p for p in fake.parameters() if p.requires_grad]
    for p in fake_params:
        p.requires_grad_(False)
    x_teacher = x_t - tt * v(teacher, x_t, t, sid.teacher_guidance)
    x_fake = x_t - tt * v(fake, x_t, t, sid.fake_guidance_eval)
    diff = (x_teacher - x_fake).float()
    per_sample = (diff * ((x_teacher - x_g).float() - sid.alpha * diff) * (1 - tt)).flatten(1).sum(1)
    loss_g = sid.generator_loss_scale * per_sample.mean()
    optimizers["generator"].zero_grad(set_to_none=True)
    loss_g.backward()
    optimizers["generator"].step()
    for p in fake_params:
        p.requires_grad_(True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- driver -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument(
        "--modes", nargs="+", default=["shared_base"], choices=["shared_base", "lora", "full"]
    )
    parser.add_argument("--resolutions", nargs="+", type=int, default=[512, 1024])
    parser.add_argument(
        "--batches", nargs="+", type=int, default=[4, 2], help="images per GPU, per resolution"
    )
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="iterations before timing")
    parser.add_argument("--rank", type=int, default=64, help="LoRA rank (alpha = rank)")
    parser.add_argument("--teacher-guidance", type=float, default=3.5)
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--checkpoint-policies",
        nargs="+",
        default=["all"],
        choices=["all", "frozen"],
        help="model.checkpoint_policy",
    )
    parser.add_argument("--attention-backend", default="auto")
    parser.add_argument(
        "--compile",
        nargs="+",
        default=["off"],
        choices=["off", "blocks"],
        help="train.compile values to time",
    )
    parser.add_argument("--baseline", action="store_true", help="also time the plain single-GPU iteration")
    parser.add_argument("--skip-product", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gpus", type=int, default=0, help="Ray workers (0: every visible GPU; 1 on CPU)")
    parser.add_argument("--peak-tflops", type=float, default=H200_PEAK_TFLOPS)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    parser.add_argument("--json", type=Path, help="append each measurement as a JSON line here")
    parser.add_argument("--verbose", action="store_true", help="print the runs' progress lines")
    args = parser.parse_args()
    if len(args.batches) == 1:
        args.batches = args.batches * len(args.resolutions)
    if len(args.batches) != len(args.resolutions):
        parser.error("--batches takes one value, or one per resolution")
    gpus = args.gpus or (torch.cuda.device_count() if args.device == "cuda" else 1)
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="sid-step-") as tmp:
        for mode in args.modes:
            for resolution, batch in zip(args.resolutions, args.batches, strict=True):
                configs = [
                    product_config(args, mode, resolution, batch, gpus, Path(tmp), policy, compiled)
                    for compiled in args.compile
                    for policy in args.checkpoint_policies
                ]
                forward = forward_flops(configs[0])
                runs = [] if args.skip_product else [(measure_product, c) for c in configs]
                if args.baseline and mode != "full":
                    runs.append((measure_baseline, configs[0]))
                for run, config in runs:
                    m = run(config, args, forward, gpus)
                    results.append(m)
                    print(_line(m), flush=True)
                    if args.json:
                        with args.json.open("a") as f:
                            f.write(json.dumps(asdict(m)) + "\n")
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
    print(table(results))


def _line(m: Measurement) -> str:
    return (
        f"{m.path:8s} {m.model} {m.mode} ckpt={m.policy} compile={m.compile} {m.resolution}px x{m.images_per_gpu} on {m.gpus} GPU: "
        f"{m.s_per_iteration:.2f} s/it, {m.img_per_s_per_gpu:.3f} img/s/GPU, peak {m.peak_gib:.1f} GiB, "
        f"MFU {100 * m.mfu:.1f}% (forward {m.forward_tflop:.2f} TFLOP, mean k {m.mean_k:.2f})"
    )


def table(results: list[Measurement]) -> str:
    lines = [
        "| path | model | mode | checkpointing | compile | res | img/GPU | GPUs | s/it | img/s/GPU "
        "| img/s/GPU at E[k] | peak GiB | MFU | vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = {(m.model, m.resolution): m for m in results if m.path == "baseline"}
    for m in results:
        base = baseline.get((m.model, m.resolution))
        ratio = f"{m.img_per_s_per_gpu / base.img_per_s_per_gpu:.2f}x" if base and m is not base else ""
        lines.append(
            f"| {m.path} | {m.model} | {m.mode} | {m.policy} | {m.compile} | {m.resolution} | {m.images_per_gpu} | {m.gpus} | "
            f"{m.s_per_iteration:.2f} | {m.img_per_s_per_gpu:.3f} | {m.img_per_s_at_expected_k:.3f} | {m.peak_gib:.1f} | "
            f"{100 * m.mfu:.1f}% | {ratio} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
