"""Helpers for the config round-trip tests: a test model must set every field."""

from __future__ import annotations

import dataclasses
from typing import Any


def unset_fields(obj: Any, prefix: str = "") -> list[str]:
    """Fields of the dataclass ``obj`` (nested ones too) left at their defaults: a
    round trip of such a model proves nothing about them, so a test that builds
    its model with every field set fails when a field is added and not tried."""
    unset: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            unset += unset_fields(value, f"{prefix}{f.name}.")
            continue
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else dataclasses.MISSING)
        if default is not dataclasses.MISSING and value == default:
            unset.append(prefix + f.name)
    return unset
