"""torch-fidelity's InceptionV3 without torchvision.

torchmetrics' FID imports torch-fidelity's InceptionV3 at import time whenever torch-fidelity is
installed, and so does `import torchmetrics` (through its image metrics). torch-fidelity's package
`__init__` imports all of its extractors, and its CLIP, VGG and DINOv2 ones import torchvision; the
InceptionV3 that FID uses does not. Where torchvision is absent (this project's CPU machines: the
registry has no CPU torchvision for the pinned torch), importing torch-fidelity would then fail and
take every torchmetrics metric with it. `register_without_package_init` registers the package by
its path without running its `__init__`, so that its submodules (the InceptionV3, its helpers)
import on their own. With torchvision present, or torch-fidelity absent, it does nothing.
"""

from __future__ import annotations

import importlib.util
import sys

PACKAGE = "torch_fidelity"


def register_without_package_init() -> bool:
    """Make torch-fidelity's submodules importable without torchvision; True if it had to."""
    if PACKAGE in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        return False
    # a package module with its __path__ set and its __init__ not executed
    sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)
    return True
