"""Time scaled-dot-product attention's kernels at FLUX.1-dev's shapes, forward + backward, on a GPU.

Why: at 512 x 4 the compiled iteration spends 0.56 s of 3.20 s in FlashAttention-2 at ~21% of
the H200's peak (benchmarks/results/flux-dev_h200_2026-12-02.md). cuDNN's Hopper kernel is the
faster one torch ships, but its backward crashed inside the full model. This script times each
backend alone, with q/k/v laid out as diffusers' Flux processor hands them to SDPA (views of a
(batch, tokens, heads, dim) tensor) and contiguous, and checks each result against flash's.

    python3 benchmarks/device/attention_kernels.py            # 512 and 1024 sequences
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

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


def run_once(backend: str, q, k, v, grad):
    with sdpa_kernel(BACKENDS[backend]):
        out = F.scaled_dot_product_attention(q, k, v)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    return out, dq, dk, dv


def time_backend(backend: str, q, k, v, grad, repeats: int) -> float:
    for _ in range(3):
        run_once(backend, q, k, v, grad)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        run_once(backend, q, k, v, grad)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--repeats", type=int, default=20)
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
        for contiguous in (False, True):
            q, k, v = qkv(batch, tokens, contiguous)
            grad = torch.randn_like(q)
            reference = run_once("flash", q, k, v, grad)
            for backend in BACKENDS:
                layout = "contiguous" if contiguous else "views"
                try:
                    seconds = time_backend(backend, q, k, v, grad, args.repeats)
                    result = run_once(backend, q, k, v, grad)
                    err = [
                        float((a.detach().float() - b.detach().float()).abs().max())
                        for a, b in zip(result[:2], reference[:2], strict=True)
                    ]
                    rate = flop / seconds / 1e12
                    print(
                        f"| {resolution} | {batch} | {tokens} | {layout} | {backend} | {seconds * 1e3:.2f} | "
                        f"{rate:.0f} | {100 * rate / args.peak_tflops:.0f}% | {err[0]:.3g}, {err[1]:.3g} |",
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
