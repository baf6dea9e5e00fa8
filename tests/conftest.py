"""Shared test configuration: skip root-only and browser tests with a reason
when this machine cannot run them."""

from __future__ import annotations

import os
import shutil

import pytest


def _has_root_net() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def _has_browser() -> str | None:
    if shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"):
        return "needs Debian's chromium (scripts/setup.sh installs it as root)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root_reason = _has_root_net()
    browser_reason = _has_browser()
    for item in items:
        if root_reason and "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=root_reason))
        if browser_reason and "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=browser_reason))
