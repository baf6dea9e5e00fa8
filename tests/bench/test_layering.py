"""The benchmarks import the layers, never the reverse; the suites the CLI names exist."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from qkdmeet.bench import SUITES
from qkdmeet.cli import BENCH_LAYERS

SRC = Path(__file__).resolve().parents[2] / "src" / "qkdmeet"
IMPORTS_BENCH = re.compile(r"^\s*(from|import)\s+qkdmeet\.bench\b", re.M)


def test_no_product_module_imports_the_benchmarks() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "bench" or rel == Path("cli.py"):  # the CLI dispatches to them
            continue
        if IMPORTS_BENCH.search(path.read_text()):
            offenders.append(str(rel))
    assert offenders == []


def test_every_suite_exists_and_the_cli_offers_each() -> None:
    assert tuple(SUITES) == BENCH_LAYERS
    for layer, module in SUITES.items():
        assert importlib.util.find_spec(module) is not None, (layer, module)


def test_the_cli_loads_no_benchmark_code_to_start() -> None:
    code = "import sys, qkdmeet.cli; print(sorted(m for m in sys.modules if 'bench' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "['qkdmeet.bench']"
