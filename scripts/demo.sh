#!/usr/bin/env bash
# Install, then run the main job: `qkdmeet demo` on its built-in defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/qkdmeet demo "$@"
