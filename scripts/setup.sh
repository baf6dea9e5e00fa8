#!/usr/bin/env bash
# Set up everything qkdmeet needs on a fresh Debian machine: system packages
# (chromium for the browser tests, iproute2 for the testbed, tcpdump for WAN
# captures), a virtual environment in .venv and the package with its dev extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v tcpdump >/dev/null 2>&1 || need_apt+=(tcpdump)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "setup: installing Debian packages: ${need_apt[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        echo "setup: missing Debian packages (${need_apt[*]}); run as root to install them" >&2
    fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.qkdmeet-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
# compile the VPN data path's numba kernels into their cache now (a cold compile
# takes ~13 s, which a gateway would otherwise spend at its first start)
.venv/bin/python -c "from qkdmeet.vpn import pump; pump.warm_up()"
# and the QKD link's post-processing kernels (sampling, sifting, Cascade, hashing)
.venv/bin/python -c "from qkdmeet.qkd.link import link_params; from qkdmeet.qkd.warmup import warm_up; warm_up(link_params('toshiba', loss_db=2.0, block_bits=100_000))"
