"""Atomic output directories (invariant 7 of DESIGN.md): the old state or the complete new one.

Rules:
1. ``check_new_directory`` refuses a path that exists and is not an empty directory
   (``InvalidInput("output.exists")``): outputs are never overwritten or mixed.
2. ``write_directory`` writes every file into a temporary sibling, fsyncs each file, renames
   the sibling onto the path in one ``os.replace`` and fsyncs the parent; on any error the
   sibling is removed and the path is left as it was. A reader never sees half a directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hgan.release.errors import InvalidInput


def check_new_directory(out: str | Path, *, what: str) -> None:
    """Rule 1; ``what`` names the output in the hint ("models", "reports")."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput("output.exists", f"{out}: already exists and is not an empty directory",
                           hint=f"choose a new --out path; {what} are never overwritten")


def write_directory(out: str | Path, files: dict[str, bytes], *, what: str) -> Path:
    """Rule 2: the directory ``out`` holding exactly ``files`` (name -> content); return its path."""
    out = Path(out)
    check_new_directory(out, what=what)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
