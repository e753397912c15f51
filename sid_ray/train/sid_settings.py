"""SiDSettings (what one iteration needs) from the user's config: the one place it is built.

The settings' fields carry the config's names, so they are copied by name, not by hand; only
the time law (an object) and the data-aided section (None when off) are made here.
"""

from __future__ import annotations

import dataclasses

from sid_ray.config.schema import SiDConfig
from sid_ray.sid.gan import DataAidedSettings
from sid_ray.sid.step import SiDSettings
from sid_ray.sid.time_laws import make_time_law

MADE_HERE = ("time_law", "data_aided")


def settings_from_config(sid: SiDConfig) -> SiDSettings:
    copied = {
        f.name: getattr(sid, f.name) for f in dataclasses.fields(SiDSettings) if f.name not in MADE_HERE
    }
    time_law = make_time_law(sid.time_law, **sid.time_law_params())
    return SiDSettings(**copied, time_law=time_law, data_aided=_data_aided(sid))


def _data_aided(sid: SiDConfig) -> DataAidedSettings | None:
    aided = sid.data_aided
    if not aided.enabled:
        return None
    return DataAidedSettings(
        **{f.name: getattr(aided, f.name) for f in dataclasses.fields(DataAidedSettings)}
    )
