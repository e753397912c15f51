"""Tiny pipeline folders built once per session (real architecture classes, tiny configs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_flux_folder(tmp_path_factory) -> Path:
    from sid_ray.models.tiny.flux import build_tiny_flux

    torch.manual_seed(0)
    return build_tiny_flux(tmp_path_factory.mktemp("flux-tiny") / "pipeline")
