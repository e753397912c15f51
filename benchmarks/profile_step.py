"""Where one SiD iteration's time goes: torch.profiler over `distill_step` on one device.

The networks are built as the Ray worker builds them (`build_adapter_on`, random weights of the
released architecture, the run's LoRA mode, checkpointing and `train.compile`, `transform_networks`), stepped with plain torch Adam
(`TorchTrainedNetwork`, as the single-process loop does: no DeepSpeed), so the profile is the
model's and the method's, not the engines'. Prints GPU time by kernel family (matmul, attention,
everything else), GPU busy time against wall time (the rest is the GPU waiting on the CPU), and
the top kernels.

    python benchmarks/profile_step.py --model flux-dev --resolution 512 --batch 4 \\
        --set model.checkpoint_policy=frozen
    python benchmarks/profile_step.py --model flux-dev --set train.compile=blocks  # compiled blocks
    python benchmarks/profile_step.py --model flux-tiny --resolution 32 --batch 2 --device cpu  # smoke
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from sid_ray.config import load_config
from sid_ray.models.registry import build_adapter_on
from sid_ray.sid.step import MicroBatch, SiDNetworks, StepContext, distill_step
from sid_ray.sid.torch_network import TorchTrainedNetwork, sid_adam
from sid_ray.train.attention import select_attention_backend
from sid_ray.train.parallelize import transform_networks
from sid_ray.train.sid_settings import settings_from_config

FAMILIES = {  # kernel-name fragments -> family (first match wins)
    "attention": ("flash", "fmha", "attention", "sdpa"),
    "matmul": ("gemm", "matmul", "cutlass", "sm90_xmma", "nvjet", "cublas"),
}


def family(kernel: str) -> str:
    name = kernel.lower()
    return next((fam for fam, parts in FAMILIES.items() if any(p in name for p in parts)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iteration", type=int, default=10, help="the profiled iteration (seed 0: k = 3)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = load_config(
        None,
        [
            f"model.name={args.model}",
            "model.init=random",
            "model.dtype=bfloat16",
            f"model.resolution={args.resolution}",
            "model.gradient_checkpointing=true",
            "model.lora.mode=shared_base",
            "sid.teacher_guidance=3.5",
            *args.set,
        ],
    )
    select_attention_backend(config.train.attention_backend, device)
    adapter = build_adapter_on(config, device)
    fake, generator = adapter.make_trainable_copy("fake"), adapter.make_trainable_copy("generator")
    for note in transform_networks(config, adapter, fake, generator):  # checkpointing, train.compile
        print(note)
    nets = [
        TorchTrainedNetwork(m, sid_adam([p for p in m.parameters() if p.requires_grad], lr=1e-6))
        for m in (fake, generator)
    ]
    settings = settings_from_config(config.sid)
    cond = adapter.encode_prompts(["a photo of a red fox in the snow"] * args.batch).to(device, adapter.dtype)
    batch = [MicroBatch(cond, args.batch)]

    def step(iteration: int):
        ctx = StepContext(0, iteration, adapter.latent_shape, device, adapter.dtype)
        metrics = distill_step(SiDNetworks(adapter.teacher, *nets), batch, settings, ctx)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return metrics

    for warm in range(2):
        step(args.iteration + 1 + warm)  # other iterations: the profiled one's k is not warmed by itself
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        metrics = step(args.iteration)
    wall = time.perf_counter() - start
    report(prof, wall, metrics.num_steps, device)
    start = time.perf_counter()
    step(args.iteration)  # the same iteration (same k) again, without the profiler's overhead
    print(f"the same iteration without the profiler: {time.perf_counter() - start:.2f} s")


def report(prof, wall: float, k: int, device: torch.device) -> None:
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"] if device.type == "cuda" else []
    by_family: dict[str, float] = defaultdict(float)
    for event in events:
        by_family[family(event.key)] += event.self_device_time_total / 1e6
    busy = sum(by_family.values())
    print(f"iteration k={k}: wall {wall:.2f} s (under the profiler), GPU kernels {busy:.2f} s")
    for fam, seconds in sorted(by_family.items(), key=lambda kv: -kv[1]):
        print(f"  {fam:10s} {seconds:7.2f} s  {100 * seconds / max(wall, 1e-9):5.1f}% of wall")
    print(f"  {'GPU idle':10s} {wall - busy:7.2f} s  {100 * (wall - busy) / max(wall, 1e-9):5.1f}% of wall")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=20, max_name_column_width=70))


if __name__ == "__main__":
    main()
