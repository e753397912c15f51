"""`train.attention_backend`: which scaled-dot-product-attention kernel torch prefers on a GPU.

Each setting names the kernel tried first; calls it cannot serve fall back to torch's others, so
the text encoders' masked attention (CLIP's causal mask, which neither flash nor cuDNN take) still
runs. Torch's own order (flash, memory-efficient, math, cuDNN last) never reaches cuDNN's kernel,
the Hopper-tuned one: at FLUX.1-dev's shapes on an H200 it runs forward + backward ~1.9x faster
than FlashAttention-2 (`benchmarks/device/attention_kernels.py`) and a compiled iteration 5%
faster. "auto" leaves cuDNN out (eager, it is no faster); "cudnn" puts it first: compiled FLUX.1-dev
runs 24% faster per iteration at 1024 x 2. The flags and the order are process-wide
(`torch.backends.cuda.enable_*_sdp`, the priority `sdpa_kernel(set_priority=True)` sets), set once
per worker before the first forward.

Why cuDNN's backward failed in eager: FLUX's single-stream block concatenates the attention
output with the MLP's before `proj_out`, so the gradient that reaches attention is a column slice
of a wider tensor, with strides unlike the output's. `keep_attention_gradients_in_output_layout`
puts an identity after each eager attention module whose backward hands the gradient on in the
output's own layout (a copy only where the strides differ). Measured on an H200 (torch 2.11,
cuDNN 9.19): the eager full-size GPU test with cuDNN first crashes with an illegal memory access
without it and passes with it. The kernel alone, given such a gradient
(`benchmarks/device/attention_kernels.py --grad-layouts single_block`), does not fail, so the
fault needs more of the model than the layout; the fix is what was shown to work. Compiled
blocks never showed it (inductor lays out the backward's inputs itself) and are left as they are.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_processor import Attention
from torch import nn
from torch.nn.attention import SDPBackend

_FALLBACKS = ("flash", "efficient", "math")
# backend -> the kernels torch may use, in the order it tries them
KERNELS: dict[str, tuple[str, ...]] = {
    "auto": _FALLBACKS,
    "cudnn": ("cudnn", *_FALLBACKS),
    "flash": _FALLBACKS,
    "efficient": ("efficient", "flash", "math"),
    "math": ("math",),
}
_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
_SWITCHES = {
    "flash": torch.backends.cuda.enable_flash_sdp,
    "efficient": torch.backends.cuda.enable_mem_efficient_sdp,
    "math": torch.backends.cuda.enable_math_sdp,
    "cudnn": torch.backends.cuda.enable_cudnn_sdp,
}


def select_attention_backend(backend: str, device: torch.device) -> str:
    """Allow `backend`'s kernels on CUDA devices, in its order; returns a line for the log.

    On the CPU torch has its own kernels and these flags do not apply."""
    if backend not in KERNELS:
        raise ValueError(f"train.attention_backend: {backend!r} is not one of {list(KERNELS)}")
    if device.type != "cuda":
        return f"attention: {device.type} (torch's own kernel; train.attention_backend applies to GPUs)"
    allowed = KERNELS[backend]
    for name, switch in _SWITCHES.items():
        switch(name in allowed)
    _prefer(allowed)
    return f"attention: {backend} -> {', '.join(allowed)}"


def _prefer(kernels: tuple[str, ...]) -> None:
    """Torch's kernel priority with `kernels` first, the rest in their old order.

    The same call `torch.nn.attention.sdpa_kernel(..., set_priority=True)` makes on entry; a
    context manager cannot hold it for a whole worker."""
    first = [int(_BACKENDS[name]) for name in kernels]
    rest = [b for b in torch._C._get_sdp_priority_order() if b not in first]
    torch._C._set_sdp_priority_order(first + rest)


def kernel_priority() -> list[str]:
    """The enabled kernels, in the order torch tries them (for tests and logs)."""
    names = {int(b): name for name, b in _BACKENDS.items()}
    enabled = {name for name in _BACKENDS if _is_enabled(name)}
    return [names[b] for b in torch._C._get_sdp_priority_order() if names.get(b) in enabled]


def _is_enabled(name: str) -> bool:
    flag = {"efficient": "mem_efficient"}.get(name, name)
    return getattr(torch.backends.cuda, f"{flag}_sdp_enabled")()


class _GradientInOutputLayout(torch.autograd.Function):
    """The identity; its backward returns the gradient with the forward tensor's strides."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.layout = (x.shape, x.stride())
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        shape, stride = ctx.layout
        if grad.stride() == stride:
            return grad
        return torch.empty_strided(shape, stride, dtype=grad.dtype, device=grad.device).copy_(grad)


def gradient_in_output_layout(x: torch.Tensor) -> torch.Tensor:
    """`x`, whose gradient will reach its producer in `x`'s own layout (no-op without grad)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return _GradientInOutputLayout.apply(x)


def _output_in_own_layout(module: nn.Module, args, output):
    if isinstance(output, torch.Tensor):
        return gradient_in_output_layout(output)
    if isinstance(output, tuple):
        return tuple(gradient_in_output_layout(o) if isinstance(o, torch.Tensor) else o for o in output)
    return output


def keep_attention_gradients_in_output_layout(transformers: list[nn.Module]) -> int:
    """A forward hook on every attention module of `transformers` (each module once, for the
    shared base's three roles); returns how many modules it hooked."""
    modules = {
        id(m): m
        for t in transformers
        for m in t.modules()
        if isinstance(m, (Attention, AttentionModuleMixin))
    }
    for module in modules.values():
        module.register_forward_hook(_output_in_own_layout)
    return len(modules)
