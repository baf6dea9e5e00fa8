#!/usr/bin/env bash
# Install what the tests need, then run lint and the whole test suite.
# Tests marked root (namespaces, TUN) and browser (chromium) run when the
# machine allows them and are skipped with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -q -ra "$@"
