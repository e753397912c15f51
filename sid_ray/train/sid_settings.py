"""SiDSettings (what one iteration needs) from the user's config."""

from __future__ import annotations

from sid_ray.config.schema import SiDConfig
from sid_ray.sid.gan import DataAidedSettings
from sid_ray.sid.step import SiDSettings
from sid_ray.sid.time_laws import make_time_law


def settings_from_config(sid: SiDConfig) -> SiDSettings:
    return SiDSettings(
        num_steps=sid.num_steps,
        rollout_noise=sid.rollout_noise,
        time_law=make_time_law(sid.time_law, **sid.time_law_params()),
        weighting=sid.weighting,
        alpha=sid.alpha,
        fake_loss_scale=sid.fake_loss_scale,
        generator_loss_scale=sid.generator_loss_scale,
        fake_guidance_train=sid.fake_guidance_train,
        fake_guidance_eval=sid.fake_guidance_eval,
        teacher_guidance=sid.teacher_guidance,
        generator_guidance=sid.generator_guidance,
        fake_updates=sid.fake_updates,
        data_aided=_data_aided(sid),
    )


def _data_aided(sid: SiDConfig) -> DataAidedSettings | None:
    aided = sid.data_aided
    if not aided.enabled:
        return None
    return DataAidedSettings(
        discriminator_weight=aided.discriminator_weight,
        generator_weight=aided.generator_weight,
        warmup_kimg=aided.warmup_kimg,
        generator_hold_kimg=aided.generator_hold_kimg,
    )
