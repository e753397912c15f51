"""Time scaled-dot-product attention's kernels at FLUX.1-dev's shapes, forward + backward, on a GPU.

Why: at 512 x 4 the compiled iteration spends 0.56 s of 3.20 s in FlashAttention-2 at ~21% of
the H200's peak (benchmarks/results/flux-dev_h200_2026-12-02.md). cuDNN's Hopper kernel is the
faster one torch ships, but its backward crashed inside the full model. This script times each
backend alone, with q/k/v laid out as diffusers' Flux processor hands them to SDPA (views of a
(batch, tokens, heads, dim) tensor) and contiguous, and checks each result against flash's.

    python3 benchmarks/device/attention_kernels.py            # 512 and 1024 sequences
    python3 benchmarks/device/attention_kernels.py --grad-layouts like_out single_block \
        single_block_fixed --batches 1 1

`single_block` runs the backward the way FLUX's single-stream block does: the attention output,
back in (batch, tokens, width), is concatenated with the MLP's before `proj_out`, so the
gradient reaching attention is a column slice of a (batch, tokens, 5 x width) tensor, with
strides unlike the output's. `single_block_fixed` passes the attention output through
`sid_ray.train.attention.gradient_in_output_layout` first.
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sid_ray.train.attention import gradient_in_output_layout

HEADS, HEAD_DIM, TEXT_TOKENS = 24, 128, 512
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}


def image_tokens(resolution: int) -> int:
    return (resolution // 16) ** 2  # VAE /8, then 2x2 patches


def qkv(batch: int, tokens: int, contiguous: bool, seed: int = 0) -> list[torch.Tensor]:
    """q, k, v as (batch, heads, tokens, dim); as transposed views unless `contiguous`."""
    g = torch.Generator("cuda").manual_seed(seed)
    out = []
    for _ in range(3):
        x = torch.randn(batch, tokens, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=g)
        x = x.transpose(1, 2)
        out.append((x.contiguous() if contiguous else x).requires_grad_(True))
    return out


def output_grad(q: torch.Tensor, grad_layout: str) -> torch.Tensor:
    """The gradient the backward starts from: of the attention output, or of the block's concat."""
    if grad_layout == "like_out":
        return torch.randn_like(q)
    batch, heads, tokens, dim = q.shape
    return torch.randn(batch, tokens, 5 * heads * dim, device=q.device, dtype=q.dtype)


def run_once(backend: str, q, k, v, grad, grad_layout: str = "like_out"):
    with sdpa_kernel(BACKENDS[backend]):
        out = F.scaled_dot_product_attention(q, k, v)
        if grad_layout == "like_out":
            dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
            return out, dq, dk, dv
        width = q.shape[1] * q.shape[3]
        attn_output = out.permute(0, 2, 1, 3).flatten(2, 3)  # diffusers' processor
        if grad_layout == "single_block_fixed":
            attn_output = gradient_in_output_layout(attn_output)
        mlp = torch.zeros(*attn_output.shape[:2], 4 * width, device=q.device, dtype=q.dtype)
        block = torch.cat([attn_output, mlp], dim=2)  # FluxSingleTransformerBlock, before proj_out
        dq, dk, dv = torch.autograd.grad(block, (q, k, v), grad)
    return out, dq, dk, dv


def time_backend(backend: str, q, k, v, grad, grad_layout: str, repeats: int) -> float:
    for _ in range(3):
        run_once(backend, q, k, v, grad, grad_layout)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        run_once(backend, q, k, v, grad, grad_layout)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--grad-layouts",
        nargs="+",
        default=["like_out"],
        choices=["like_out", "single_block", "single_block_fixed"],
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}"
    )
    print(
        "| res | batch | tokens | layout | backend | ms fwd+bwd | TFLOP/s | % peak | max |d - flash| (out, dq) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for resolution, batch in zip(args.resolutions, args.batches, strict=True):
        tokens = image_tokens(resolution) + TEXT_TOKENS
        # forward 4*B*H*L^2*D; backward counted as two forwards
        flop = 3 * 4 * batch * HEADS * tokens**2 * HEAD_DIM
        for contiguous, grad_layout in itertools.product((False, True), args.grad_layouts):
            q, k, v = qkv(batch, tokens, contiguous)
            grad = output_grad(q, grad_layout)
            reference = run_once("flash", q, k, v, grad, grad_layout)
            for backend in BACKENDS:
                layout = ("contiguous" if contiguous else "views") + f", {grad_layout}"
                try:
                    seconds = time_backend(backend, q, k, v, grad, grad_layout, args.repeats)
                    result = run_once(backend, q, k, v, grad, grad_layout)
                    torch.cuda.synchronize()
                    err = [
                        float((a.detach().float() - b.detach().float()).abs().max())
                        for a, b in zip(result[:2], reference[:2], strict=True)
                    ]
                    rate = flop / seconds / 1e12
                    print(
                        f"| {resolution} | {batch} | {tokens} | {layout} | {backend} | {seconds * 1e3:.2f} | "
                        f"{rate:.0f} | {100 * rate / args.peak_tflops:.0f}% | {err[0]:.3g}, {err[1]:.3g} "
                        f"(out stride {tuple(result[0].stride())}) |",
                        flush=True,
                    )
                except Exception as error:  # report the failure and go on to the next kernel
                    print(
                        f"| {resolution} | {batch} | {tokens} | {layout} | {backend} | failed: "
                        f"{type(error).__name__}: {str(error).splitlines()[0][:120]} |||||",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
