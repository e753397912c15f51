"""The SiD method as pure torch functions (shared/SID.md). Imports no ray, deepspeed, diffusers or mlflow."""

from sid_ray.sid.flow import (
    edm_sigma,
    eps_from_velocity,
    interpolate,
    velocity_from_x0,
    velocity_target,
    x0_from_velocity,
)
from sid_ray.sid.guidance import Conditioning, VelocityModel, cfg_combine, classifier_free_guidance
from sid_ray.sid.losses import fake_score_loss, generator_loss
from sid_ray.sid.nonfinite import GeneratorLoss, generator_loss_without_nonfinite
from sid_ray.sid.rollout import draw_num_steps, rollout, rollout_times
from sid_ray.sid.step import (
    MicroBatch,
    SiDNetworks,
    SiDSettings,
    StepContext,
    StepMetrics,
    TrainedNetwork,
    distill_step,
)
from sid_ray.sid.time_laws import LogitNormal, Uniform, make_time_law
from sid_ray.sid.weighting import WEIGHTINGS, loss_weight

__all__ = [
    "Conditioning",
    "GeneratorLoss",
    "LogitNormal",
    "MicroBatch",
    "SiDNetworks",
    "SiDSettings",
    "StepContext",
    "StepMetrics",
    "TrainedNetwork",
    "Uniform",
    "VelocityModel",
    "WEIGHTINGS",
    "cfg_combine",
    "classifier_free_guidance",
    "distill_step",
    "draw_num_steps",
    "edm_sigma",
    "eps_from_velocity",
    "fake_score_loss",
    "generator_loss",
    "generator_loss_without_nonfinite",
    "interpolate",
    "loss_weight",
    "make_time_law",
    "rollout",
    "rollout_times",
    "velocity_from_x0",
    "velocity_target",
    "x0_from_velocity",
]
