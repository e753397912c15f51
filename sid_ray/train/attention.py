"""`train.attention_backend`: which scaled-dot-product-attention kernels torch may pick on a GPU.

Why a setting: on the GPU image's torch 2.11 the cuDNN attention backward fails inside a
full-size FLUX.1-dev ("mha_graph.execute(...).is_good()", or an illegal memory access), while the
same call alone passes; torch prefers cuDNN on Hopper, so "auto" leaves it out and lets torch
choose among flash, memory-efficient and math (in that order of preference). The flags are
process-wide (`torch.backends.cuda.enable_*_sdp`), set once per worker before the first forward.
"""

from __future__ import annotations

import torch

# backend -> the kernels torch may use (flash / memory-efficient / math / cuDNN)
KERNELS: dict[str, tuple[str, ...]] = {
    "auto": ("flash", "efficient", "math"),
    "flash": ("flash",),
    "efficient": ("efficient",),
    "cudnn": ("cudnn",),
    "math": ("math",),
}
_SWITCHES = {
    "flash": torch.backends.cuda.enable_flash_sdp,
    "efficient": torch.backends.cuda.enable_mem_efficient_sdp,
    "math": torch.backends.cuda.enable_math_sdp,
    "cudnn": torch.backends.cuda.enable_cudnn_sdp,
}


def select_attention_backend(backend: str, device: torch.device) -> str:
    """Allow only `backend`'s kernels on CUDA devices; returns a line for the log.

    On the CPU torch has its own kernels and these flags do not apply."""
    if backend not in KERNELS:
        raise ValueError(f"train.attention_backend: {backend!r} is not one of {list(KERNELS)}")
    if device.type != "cuda":
        return f"attention: {device.type} (torch's own kernel; train.attention_backend applies to GPUs)"
    allowed = KERNELS[backend]
    for name, switch in _SWITCHES.items():
        switch(name in allowed)
    return f"attention: {backend} -> {', '.join(allowed)}"
