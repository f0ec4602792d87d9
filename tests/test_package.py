"""Packaging and layout rules of DESIGN.md."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from hgan.release import errors

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(("." * node.level) + node.module)
    return names


def test_release_never_imports_the_hospital_side():
    offenders = []
    for path in (ROOT / "release").rglob("*.py"):
        for name in _imports(path):
            if re.match(r"(hgan\.)?(appliance|audit|policies)\b|\.\.(appliance|audit|policies)", name):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_sample_command_does_not_load_training_code():
    code = ("import sys; from hgan.cli import cli; cli.get_command(None, 'sample'); "
            "print(sorted(m for m in sys.modules if m.startswith('hgan.appliance') or m == 'opacus'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_error_codes_are_unique_and_documented():
    doc = errors.__doc__
    for code in errors.CODES:
        assert re.search(rf"^\s+{re.escape(code)}\s", doc, re.M), code
    documented = re.findall(r"^    ([a-z_]+\.[a-z_]+)\s", doc, re.M)
    assert sorted(documented) == sorted(errors.CODES)
    assert len(set(documented)) == len(documented)


def test_built_wheel_installs_only_the_hgan_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("hgan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"hgan"}
    assert "hgan/release/schema.py" in names and "hgan/appliance/train.py" in names
    assert "hgan/audit/attacks/membership.py" in names
    assert "hgan/appliance/demo_data/flchain.csv" in names
    assert not any(n.startswith("hgan/tests") for n in names)
