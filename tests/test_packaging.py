"""The wheel a user installs: built from the source tree by the project's own build system (PEP 517,
``pyproject.toml``), without the network (the environment's setuptools), and read back."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_package_its_types_and_the_console_script(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "labelmeta", src / "labelmeta", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, text=True)
    [wheel] = (tmp_path / "dist").glob("labelmeta-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "labelmeta").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "labelmeta/py.typed" in names
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(info).decode()
    assert "[console_scripts]" in entry_points and "labelmeta = labelmeta.cli:main" in entry_points
    metadata = zipfile.ZipFile(wheel).read(info.replace("entry_points.txt", "METADATA")).decode()
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    torch_req = next(r for r in requires if r.startswith("torch") and not r.startswith("torchvision"))
    # a tested lower bound and no cap on newer releases
    assert ">=" in torch_req and "<" not in torch_req, torch_req
    assert not any("tests" in n.split("/")[0] or n.startswith("benchmarks/") for n in names)
