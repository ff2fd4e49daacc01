"""Every figure README.md and docs/results.md quote is what the stores give (``benchmarks/figures.py``),
every number of their prose is marked as a figure or is a setting, and the check fails on a copy of the
docs with a figure, a table cell or an unmarked number changed. JSON only: no training."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import figure_stores as stores
import figures

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_are_what_the_stores_give():
    problems = figures.check()
    assert not problems, "\n".join(["python benchmarks/figures.py rewrites these:"] + problems)


def test_the_docs_have_figures_and_blocks_to_check():
    docs = [figures.read(path) for path in figures.DOCS]
    assert all(doc.figures for doc in docs) and all(doc.blocks for doc in docs)
    assert all(not doc.errors for doc in docs)


@pytest.fixture
def copy(tmp_path):
    """The docs copied under ``tmp_path`` (the stores stay the repository's)."""
    for path in figures.DOCS:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    return tmp_path


def _first_figure(path: str) -> figures.Figure:
    return next(fig for fig in figures.read(path).figures if re.fullmatch(r"\d+\.\d", fig.expected))


def test_a_changed_inline_figure_fails_and_the_rewrite_restores_it(copy):
    fig = _first_figure("docs/results.md")
    wrong = f"{float(fig.expected) + 0.1:.1f}"
    lines = (copy / fig.path).read_text().split("\n")
    line = lines[fig.line - 1]
    lines[fig.line - 1] = line[:fig.start] + wrong + line[fig.end:]
    (copy / fig.path).write_text("\n".join(lines))
    problems = figures.check(copy)
    assert problems == [f"{fig.path}:{fig.line}: {wrong!r} but the stores give {fig.expected!r}  [{fig.expr}]"]
    text, unplaced = figures.rewrite(figures.read(fig.path, copy))
    assert not unplaced and text == (ROOT / fig.path).read_text()


def test_a_changed_table_cell_fails(copy):
    block = figures.read("docs/results.md").blocks[0]
    path = copy / block.path
    cell = re.search(r"\d+\.\d ± \d+\.\d", block.committed).group()
    path.write_text(path.read_text().replace(block.committed, block.committed.replace(cell, "99.9 ± 9.9", 1), 1))
    [problem] = figures.check(copy)
    assert problem.startswith(f"{block.path}:") and "99.9 ± 9.9" in problem and cell in problem


def test_a_new_unmarked_figure_fails_and_a_setting_does_not(copy):
    path = copy / "README.md"
    text = path.read_text()
    path.write_text(text.replace("## Install\n", "## Install\n\nAt 40 % symmetric noise, seeds 0–2: 93.7 % (issue 36).\n", 1))
    problems = figures.check(copy)
    assert len(problems) == 1 and "'93.7'" in problems[0], problems


def test_an_expression_that_fails_is_reported_with_its_place(copy):
    path = copy / "README.md"
    path.write_text(path.read_text().replace("## Install\n", '## Install\n\n1.0<!-- fig: f(nl("mnist1d", "sym40", "no such row")) -->\n', 1))
    problems = figures.check(copy)
    assert [p for p in problems if "no such row" in p and p.startswith("README.md:")], problems


def test_the_check_command_exits_1_listing_the_figure(copy):
    fig = _first_figure("README.md")
    lines = (copy / fig.path).read_text().split("\n")
    lines[fig.line - 1] = lines[fig.line - 1][:fig.start] + "0.0" + lines[fig.line - 1][fig.end:]
    (copy / fig.path).write_text("\n".join(lines))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "figures.py"), "--check", "--root", str(copy)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"README.md:{fig.line}: '0.0'" in proc.stdout, proc.stdout + proc.stderr


def _report_table(text: str, heading: str):
    """The first table after ``heading`` in a report: row name -> its cells."""
    section = text.split(heading, 1)[1]
    rows = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in section.split("\n\n### ")[0].split("\n")
            if line.startswith("| ")]
    return {r[0].removesuffix(" †"): r[1:] for r in rows[1:]}


@pytest.mark.parametrize("dataset", stores.DATASETS)
def test_the_figures_arithmetic_is_the_reports(dataset):
    """figure_stores.nl and pm agree with noisy_labels.md, which the benchmark wrote from the same store with
    labelmeta's mean_std and cell: every row and column of the last-epoch table."""
    table = _report_table((ROOT / "benchmarks/results/noisy_labels.md").read_text(), f"## {dataset}\n")
    checked = 0
    for method, cells in table.items():
        for setting, shown in zip(stores.COLUMNS, cells):
            assert stores.pm(stores.nl(dataset, setting, method)).replace(stores.MINUS, "-") == shown, (method, setting)
            checked += 1
    assert checked > 100


def test_formatting():
    assert stores.f(-0.04) == "0.0" and stores.f(-0.06) == "−0.1" and stores.sg(0.26) == "+0.3"
    assert stores.rng([1.25, -0.5, 3]) == "−0.5 to +3.0" and stores.rng([2.0, 2.04]) == "2.0"
    assert stores.sl([1, 2.25], 1) == "1.0 / 2.2" and stores.sci(2.2e-9) == "2.2e-9"
    assert stores.span(["0.1", "0.05", "0.1"]) == "0.05–0.1"
