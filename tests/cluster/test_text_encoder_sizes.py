"""The released text encoders' sizes that the memory plan uses (each family's
`released_part_parameters`) against the encoders built from their public configs on the meta
device (`sid_ray.models.architecture.RELEASED_TEXT_ENCODERS`)."""

from __future__ import annotations

import pytest

from sid_ray.models.architecture import RELEASED_TEXT_ENCODERS, text_encoder_parameters
from sid_ray.models.registry import adapter_class

TEACHERS = {"flux": "flux-dev", "sd3": "sd35-large", "sana": "sana-1600m"}


@pytest.mark.parametrize("family", sorted(RELEASED_TEXT_ENCODERS))
def test_constants_are_the_meta_device_counts(family):
    constants = adapter_class(TEACHERS[family]).released_part_parameters
    encoders = {part: n for part, n in constants.items() if part.startswith("text_encoder")}
    assert set(encoders) == set(RELEASED_TEXT_ENCODERS[family])  # every encoder the plan counts
    for part, constant in encoders.items():
        counted = text_encoder_parameters(family, part)
        # the constants are written to the nearest million parameters
        assert abs(constant - counted) <= 500_000, (family, part, constant, counted)


def test_known_totals():
    # T5 v1.1 XXL's encoder and Gemma-2 2B, as their model cards and hub listings give them
    assert text_encoder_parameters("flux", "text_encoder_2") == 4_762_310_656
    assert text_encoder_parameters("sana", "text_encoder") == 2_614_341_888
    # FLUX.1-dev's two encoders in bf16: the "9.1 GiB" of the memory plan's docstring
    flux = sum(text_encoder_parameters("flux", p) for p in RELEASED_TEXT_ENCODERS["flux"])
    assert round(flux * 2 / 2**30, 1) == 9.1
