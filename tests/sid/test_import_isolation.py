"""The packages import downwards only, and sid_ray.sid stays pure torch.

    sid <- config <- models <- toys <- data, eval <- train <- tune <- jobs, benchmarks, scripts

`LAYERS` below is that order, the one place it is written. A module may import its own package
and the packages of lower layers; packages that share a layer (data and eval) do not import each
other. Every import statement counts, those inside functions too (a lazy import is a dependency
all the same), read from the source rather than executed. Names a module imports by string
(the registry's table of owner modules, `importlib.import_module`) are not imports here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: lowest layer first
LAYERS: tuple[tuple[str, ...], ...] = (
    ("sid_ray.sid",),  # the method, pure torch
    ("sid_ray.config",),  # the typed run config (its schema names the sid weightings)
    ("sid_ray.models",),  # the users' teacher families: FLUX, SD3, SANA, DiT code, LoRA, export
    ("sid_ray.toys",),  # the Gaussian-mixture and digits worlds, built on models
    ("sid_ray.data", "sid_ray.eval"),  # prompt and image streams; metrics and reports
    ("sid_ray.train",),  # the loop, Ray Train + DeepSpeed, checkpoints, the launcher
    ("sid_ray.tune",),  # sweeps over training runs
    ("jobs", "benchmarks", "scripts"),  # entry points
)


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer index, package) of a dotted module name; None outside the layered packages."""
    for index, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return index, package
    return None


def imported_modules(module: str, source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every module `source` imports; for `from a import b`, both `a` and
    `a.b` (b may be a submodule)."""
    found = []
    is_package = module.endswith(".__init__")
    module = module.removesuffix(".__init__")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from this module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def upward_imports(module: str, source: str) -> list[str]:
    """The imports of `module` that break the order: a higher layer, or a sibling in its layer."""
    own = layer_of(module)
    if own is None:
        return []
    bad: dict[tuple[int, str], str] = {}  # (line, package) -> the first name imported from it
    for line, name in imported_modules(module, source):
        target = layer_of(name)
        if target is not None and target[1] != own[1] and target[0] >= own[0]:
            bad.setdefault((line, target[1]), name)
    return [
        f"{module}:{line} imports {name} ({pkg} is not below {own[1]})" for (line, pkg), name in bad.items()
    ]


def layered_files() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the layered packages."""
    files = {}
    for top in {package.split(".")[0] for packages in LAYERS for package in packages}:
        for path in (ROOT / top).rglob("*.py"):
            files[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    return files


def test_every_package_has_its_place_in_the_order():
    named = {package for packages in LAYERS for package in packages}
    existing = {
        ".".join(p.relative_to(ROOT).parts)
        for p in (ROOT / "sid_ray").iterdir()
        if p.is_dir() and any(p.rglob("*.py"))
    } | {p.name for p in ROOT.iterdir() if p.name in {"jobs", "benchmarks", "scripts"}}
    assert existing == named, f"packages outside LAYERS: {existing - named}; gone: {named - existing}"
    stray = [p.name for p in (ROOT / "sid_ray").glob("*.py") if p.name != "__init__.py"]
    assert not stray, f"modules directly in sid_ray/ have no layer: {stray}"


def test_every_import_points_down_the_layers():
    bad = [
        err for module, path in layered_files().items() for err in upward_imports(module, path.read_text())
    ]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_order_check_sees_upward_sibling_and_lazy_imports():
    lazy_up = "def fit():\n    from sid_ray.train.fit_teacher import fit_to_teacher\n"
    assert upward_imports("sid_ray.toys.gaussian_mixture_adapter", lazy_up)
    assert upward_imports("sid_ray.models.flux", "import sid_ray.toys.digits\n")
    assert upward_imports("sid_ray.data.prompts", "from sid_ray.eval import prompts\n")
    assert upward_imports("sid_ray.sid.step", "from sid_ray import models\n")
    assert upward_imports("sid_ray.models.registry", "from ..train import launcher\n")
    assert not upward_imports("sid_ray.toys.digits", "from sid_ray.models.flux import FluxAdapter\n")
    assert not upward_imports("sid_ray.models.lora", "from . import dit\nfrom .base import FlowModel\n")
    assert not upward_imports("jobs.demo", "from sid_ray.train.launcher import launch\n")


def test_sid_imports_without_heavy_frameworks():
    code = (
        "import sys, sid_ray.sid, sid_ray.sid.torch_network, sid_ray.sid.sampling;"
        "bad = [m for m in ('ray', 'deepspeed', 'diffusers', 'mlflow', 'transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
