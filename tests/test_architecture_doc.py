"""``docs/ARCHITECTURE.md`` names real modules and real tests (it is read first)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
#: a path in backticks, with an optional ``::name`` or ``::Class.name`` after it
REFERENCE = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|js))((?:::[\w.]+)?)`")


def _resolve(path: str) -> Path | None:
    for base in (ROOT, ROOT / "src" / "qkdmeet"):
        if (base / path).exists():
            return base / path
    hits = list((ROOT / "src" / "qkdmeet").rglob(Path(path).name))
    return hits[0] if len(hits) == 1 else None


def test_every_module_and_test_named_exists() -> None:
    text = DOC.read_text()
    missing = []
    refs = REFERENCE.findall(text)
    assert len(refs) > 100  # the tables are there
    for path, name in refs:
        where = _resolve(path)
        if where is None:
            missing.append(path)
            continue
        if name:
            last = name.removeprefix("::").split(".")[-1]
            source = where.read_text()
            if not re.search(rf"^\s*(async def|def|class) {last}\b", source, re.M):
                missing.append(path + name)
    # ``tests/x.py::test_a``, ``::test_b``: a bare ``::name`` belongs to the file before it
    for file, rest in re.findall(r"`(tests/[\w/]+\.py)::\w+`((?:, `::\w+`)+)", text):
        source = (ROOT / file).read_text()
        for name in re.findall(r"`::(\w+)`", rest):
            if not re.search(rf"^(async def|def) {name}\b", source, re.M):
                missing.append(f"{file}::{name}")
    assert not missing, missing
