"""`train.attention_backend`: which scaled-dot-product-attention kernel torch prefers on a GPU.

Each setting names the kernel tried first; calls it cannot serve fall back to torch's others, so
the text encoders' masked attention (CLIP's causal mask, which neither flash nor cuDNN take) still
runs. Torch's own order (flash, memory-efficient, math, cuDNN last) never reaches cuDNN's kernel,
the Hopper-tuned one: at FLUX.1-dev's shapes on an H200 it runs forward + backward ~1.9x faster
than FlashAttention-2 (`benchmarks/device/attention_kernels.py`) and a compiled iteration 5%
faster. "auto" leaves cuDNN out: on torch 2.11 its backward fails inside an eager full-size
FLUX.1-dev ("mha_graph.execute(...).is_good()", or an illegal memory access), though not in the
compiled one; "cudnn" puts it first, for compiled runs. The flags and the order are
process-wide (`torch.backends.cuda.enable_*_sdp`, the priority `sdpa_kernel(set_priority=True)`
sets), set once per worker before the first forward.
"""

from __future__ import annotations

import torch
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
