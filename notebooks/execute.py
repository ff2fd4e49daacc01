"""Run the tutorials at their full configuration and store them with their outputs (``make notebooks``).

    python notebooks/execute.py                 # every notebook, in place (about 20 minutes on 2 CPU cores)
    python notebooks/execute.py 02_noisy_label_correction.ipynb

Each notebook records, in its metadata under ``labelmeta``, the SHA-256 of its code cells' sources
(:func:`code_hash`): ``tests/test_notebooks.py`` checks that the committed outputs came from the
committed code, so editing a code cell without re-running the notebook fails the suite.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def code_hash(book) -> str:
    """SHA-256 of the notebook's code cells' sources, in order (markdown edits do not count)."""
    sources = [cell.source for cell in book.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def execute(path: Path, timeout: int = 3600) -> float:
    """Run ``path`` top to bottom at its full configuration and write it back with its outputs."""
    import nbformat
    import torch
    from nbclient import NotebookClient

    import labelmeta

    os.environ.pop("LABELMETA_TUTORIAL", None)  # the full configuration, not the test suite's tiny one
    book = nbformat.read(path, as_version=4)
    start = time.time()
    NotebookClient(book, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.time() - start
    book.metadata["labelmeta"] = {
        "code_sha256": code_hash(book),
        "executed_with": f"labelmeta {labelmeta.__version__}, torch {torch.__version__}, "
                         f"Python {platform.python_version()}, {platform.machine()} CPU",
        "seconds": round(seconds),
    }
    nbformat.write(book, path)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="file names under notebooks/ (default: all)")
    args = parser.parse_args(argv)
    paths = [HERE / name for name in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        if not path.exists():
            parser.error(f"no notebook {str(path)!r}")
    for path in paths:
        print(f"{path.name}: running ...", flush=True)
        print(f"{path.name}: {execute(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
