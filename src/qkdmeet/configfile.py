"""Reading a TOML config file, once for every layer's config model.

:func:`load_toml` reads and parses the file and turns every failure (missing,
not TOML, a field the model refuses) into one :class:`~qkdmeet.errors.ConfigError`
that names the file, says what is wrong and what to do.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from qkdmeet.errors import ConfigError

T = TypeVar("T")


def load_toml(path: Path, kind: str, parse: Callable[[dict[str, Any]], T], fix_hint: str) -> T:
    """``parse`` of the TOML document at ``path`` (a ``kind``, e.g. "KME config file");
    a :class:`ConfigError` ``"<path>: <what is wrong>; <what to do>"`` if it cannot be."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        hint = f"give the path of a {kind}"
        raise ConfigError(f"{path}: {exc.strerror or exc}", hint=hint) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}", hint=fix_hint) from exc
    try:
        return parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", hint=exc.hint or fix_hint) from exc
