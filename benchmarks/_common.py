"""Helpers shared by the benchmark scripts: tables, interleaving, the machine and the code version."""

from __future__ import annotations

import hashlib
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
PACKAGE_FOLDERS = ("hgan", "appliance", "audit", "release")  # digested by code_version


def rotated(items: Sequence, k: int) -> list:
    """``items`` starting at position ``k`` (mod len): interleaving without a fixed order."""
    k %= len(items)
    return [*items[k:], *items[:k]]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt(x: float | None, digits: int = 3) -> str:
    """``digits`` significant digits; "-" for None or NaN."""
    return "-" if x is None or x != x else f"{x:.{digits}g}"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_describe() -> str | None:
    """``git describe --always --dirty`` of the checkout, or None outside one."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() or None


def code_version() -> dict:
    """The checkout's commit and a digest of the package's Python sources (all subfolders),
    which also identifies uncommitted changes."""
    digest = hashlib.sha256()
    for path in sorted(p for folder in PACKAGE_FOLDERS for p in (HERE.parent / folder).rglob("*.py")):
        digest.update(path.read_bytes())
    return {"commit": git_describe(), "sources_sha256": digest.hexdigest()[:16]}


def hgan_command() -> list[str]:
    """The installed ``hgan`` script next to this interpreter, else ``python -m hgan``."""
    script = Path(sys.executable).with_name("hgan")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hgan"]
