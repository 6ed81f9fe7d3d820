"""The allocator setting: applied once per process, and switched off by its environment variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = "from mmoe.train.allocator import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MMOE_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["MMOE_KEEP_FREED_MEMORY"] = env_value
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_switched_off_by_environment() -> None:
    assert _run("0") == "False False"


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


@pytest.mark.skipif(not _glibc(), reason="the setting is glibc's; other C libraries are left alone")
def test_applied_on_glibc() -> None:
    assert _run(None) == "True True"
