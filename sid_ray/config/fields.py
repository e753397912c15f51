"""`option(default, doc)`: a dataclass field that carries its documentation."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any


def option(default: Any, doc: str) -> Any:
    """A dataclass field with a default and a one-line docstring (shown by --help and docs)."""
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def section(cls: type, doc: str) -> Any:
    """A nested config section."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc})


def field_doc(field: dataclasses.Field) -> str:
    return field.metadata.get("doc", "")
