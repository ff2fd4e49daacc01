"""Every tutorial runs top to bottom, on its tiny configuration (LABELMETA_TUTORIAL=tiny)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_four_tutorials_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("LABELMETA_TUTORIAL", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    first = next(c for c in book.cells if c.cell_type == "code")
    assert "torch.manual_seed" in first.source, "a tutorial seeds in its first code cell"
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # a warning in a tutorial means its configuration does something other than it says (e.g. a
    # tiny run whose warm-up covers every epoch never learns labels)
    warned = [o.text for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "stream" and o.name == "stderr" and "UserWarning" in o.text]
    assert not warned, warned
