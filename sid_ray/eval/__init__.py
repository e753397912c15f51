"""Evaluation: FID (torchmetrics), CLIP score, the digits metrics, grids and curves."""

from sid_ray.eval.torch_fidelity_import import register_without_package_init

# before anything imports torchmetrics (see the module's docstring)
register_without_package_init()
