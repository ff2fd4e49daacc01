"""Every tutorial runs top to bottom, on its tiny configuration (LABELMETA_TUTORIAL=tiny), and is
stored with the outputs of its full configuration, made by its committed code."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_tutorials_are_there():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_come_from_the_committed_code(path):
    """The tutorials are stored with their outputs (``make notebooks``, full configuration), and the
    code hash recorded then matches the code now: a code cell edited without re-running fails here."""
    nbformat = pytest.importorskip("nbformat")
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute", path.parent / "execute.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    book = nbformat.read(path, as_version=4)
    stored = book.metadata.get("labelmeta", {})
    assert stored.get("code_sha256") == execute.code_hash(book), \
        f"{path.name}: its code changed since its outputs were made; run `make notebooks`"
    code = [c for c in book.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # every cell that prints or draws shows what it printed or drew
    shows = [c for c in code if "print(" in c.source or "plt.show()" in c.source or "format_table" in c.source]
    assert shows and all(c.get("outputs") for c in shows), [c.source[:60] for c in shows if not c.get("outputs")]
