"""sid_ray: Score identity Distillation of flow-matching teachers on Ray and DeepSpeed."""

__version__ = "0.1.0"
