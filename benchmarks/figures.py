"""Every figure README.md and docs/results.md quote, written from the stores (benchmarks/results/*.json).

    python benchmarks/figures.py           # rewrite the docs' figures from the stores
    python benchmarks/figures.py --check   # exit 1 listing every figure that differs from its store

Two kinds of figure, both written by an expression over the names of ``figure_stores`` and
``figure_tables`` (:data:`NAMES`), kept in an HTML comment, which markdown does not render:

- a generated block: the lines between ``<!-- figures: EXPR -->`` and ``<!-- /figures -->`` are the
  text EXPR gives (a table);
- an inline figure: ``92.5 ± 0.2<!-- fig: pm(nl("mnist1d", "sym40", DEFAULT)) -->``. EXPR gives the
  figure's text; the figure is the longest text just before the marker that has its shape (a number
  where EXPR's text has a number, the rest as written), so that a rewrite replaces exactly it, and a
  figure whose shape changed (a range that became a single number) is reported for a hand edit.

A number of the prose (outside code, links and markers) that carries no marker must be a setting, not a
measurement: it lies in a match of one of :data:`SETTINGS` (noise rates, seeds, issue numbers,
hyper-parameter values, targets, ...), or :func:`unmarked` reports it, so that a new figure cannot go
unchecked. ``tests/test_figures.py`` runs :func:`check`. JSON only: no torch, no training.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import figure_stores
import figure_tables

ROOT = Path(__file__).resolve().parents[1]
#: the documents whose figures are generated
DOCS = ("README.md", "docs/results.md")


def _public(module) -> Dict[str, object]:
    """A module's own functions and classes and its constants (upper-case names)."""
    return {name: value for name, value in vars(module).items() if not name.startswith("_") and (
        name.isupper() or getattr(value, "__module__", None) == module.__name__)}


#: the names an expression may use: the stores' helpers, the tables, and a few builtins
NAMES: Dict[str, object] = {**_public(figure_stores), **_public(figure_tables),
                            **{b.__name__: b for b in (min, max, abs, sum, len, zip, sorted, round, all, any, str, int,
                                                       float, list, set, range, enumerate)}}


def evaluate(expr: str) -> str:
    """The text an expression of the docs gives (a ``TypeError`` if it gives no text)."""
    value = eval(expr, {**NAMES, "__builtins__": {}})  # noqa: S307 (the docs' own expressions, no builtins)
    if not isinstance(value, str):
        raise TypeError(f"{expr!r} gave {value!r}, not text: format it (f, pm, sg, sl, rng)")
    return value


# --- the documents ---------------------------------------------------------------------------------

FIG = re.compile(r"<!-- fig: (.+?) -->")
BLOCK = re.compile(r"^<!-- figures: (.+) -->$")
END = "<!-- /figures -->"
NUMBER = r"[−+-]?\d+(?:\.\d+)?(?:e[−+-]?\d+)?"


def _shape(text: str) -> re.Pattern:
    """A pattern of text like ``text`` ending where the marker starts: its numbers any numbers, the rest as written."""
    parts = re.split(f"({NUMBER})", text)
    return re.compile("".join(NUMBER if i % 2 else re.escape(p) for i, p in enumerate(parts)) + r"\Z")


@dataclass
class Figure:
    """A figure in the prose: its expression, the text before its marker and what the stores give."""

    path: str
    line: int
    expr: str
    committed: Optional[str]  #: the text before the marker of the expected shape (None: none has it)
    expected: str
    start: int  #: where the committed figure starts in its line (the marker's start if none)
    end: int    #: where the marker starts

    @property
    def ok(self) -> bool:
        return self.committed == self.expected


@dataclass
class Block:
    """A generated block: the lines between its markers, as committed and as the stores give them."""

    path: str
    line: int  #: the opening marker's line (1-based)
    expr: str
    committed: str
    expected: str
    body: Tuple[int, int]  #: the 0-based line range of the generated text

    @property
    def ok(self) -> bool:
        return self.committed == self.expected


@dataclass
class Document:
    """A document's lines, with its marked figures and generated blocks."""

    path: str
    lines: List[str]
    figures: List[Figure]
    blocks: List[Block]
    errors: List[str]


def read(path: str, root: Path = ROOT) -> Document:
    """Every block and inline figure of a document, each with what the stores give."""
    lines = (root / path).read_text().split("\n")
    doc = Document(path, lines, [], [], [])
    i = 0
    while i < len(lines):
        opening = BLOCK.match(lines[i])
        if opening:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == END), None)
            if end is None:
                doc.errors.append(f"{path}:{i + 1}: '<!-- figures: ... -->' without '{END}'")
                break
            try:
                expected = evaluate(opening.group(1))
            except Exception as e:  # an expression that fails is reported with its place
                doc.errors.append(f"{path}:{i + 1}: {opening.group(1)}: {type(e).__name__}: {e}")
                expected = "\n".join(lines[i + 1:end])
            doc.blocks.append(Block(path, i + 1, opening.group(1), "\n".join(lines[i + 1:end]), expected, (i + 1, end)))
            i = end + 1
            continue
        for m in FIG.finditer(lines[i]):
            try:
                expected = evaluate(m.group(1))
            except Exception as e:
                doc.errors.append(f"{path}:{i + 1}: {m.group(1)}: {type(e).__name__}: {e}")
                continue
            # the figure: the longest text of the expected shape that ends at the marker (a number whole)
            shape = _shape(expected)
            start = next((s for s in range(max(0, m.start() - 4 * len(expected) - 40), m.start() + 1)
                          if shape.fullmatch(lines[i], s, m.start())), None)
            doc.figures.append(Figure(path, i + 1, m.group(1), None if start is None else lines[i][start:m.start()],
                                      expected, m.start() if start is None else start, m.start()))
        i += 1
    return doc


def differences(doc: Document) -> List[str]:
    """One line per figure or block of ``doc`` that differs from what the stores give, and per error."""
    out = list(doc.errors)
    for fig in doc.figures:
        if not fig.ok:
            committed = fig.committed if fig.committed is not None else f"(no figure of that shape before the marker: "\
                f"...{doc.lines[fig.line - 1][max(0, fig.end - 30):fig.end]!r})"
            out.append(f"{fig.path}:{fig.line}: {committed!r} but the stores give {fig.expected!r}  [{fig.expr}]")
    for block in doc.blocks:
        if not block.ok:
            old, new = block.committed.split("\n"), block.expected.split("\n")
            lines = [f"{block.path}:{block.line + 1 + n}: {a!r} but the stores give {b!r}"
                     for n, (a, b) in enumerate(zip(old, new)) if a != b]
            if len(old) != len(new):
                lines.append(f"{block.path}:{block.line}: {len(old)} lines but the stores give {len(new)}")
            out += lines or [f"{block.path}:{block.line}: block [{block.expr}] differs"]
    return out


def rewrite(doc: Document) -> Tuple[str, List[str]]:
    """The document with every figure and block as the stores give them, and the figures it could not
    place (no text of the figure's shape before the marker: fix those by hand)."""
    lines = list(doc.lines)
    unplaced = []
    for fig in sorted(doc.figures, key=lambda x: (x.line, -x.end)):
        if fig.committed is None:
            unplaced.append(f"{fig.path}:{fig.line}: no figure shaped like {fig.expected!r} before [{fig.expr}]")
            continue
        line = lines[fig.line - 1]
        lines[fig.line - 1] = line[:fig.start] + fig.expected + line[fig.end:]
    for block in sorted(doc.blocks, key=lambda b: -b.body[0]):
        lines[block.body[0]:block.body[1]] = block.expected.split("\n")
    return "\n".join(lines), unplaced


# --- numbers without a marker ----------------------------------------------------------------------

#: numbers of the prose that are settings, not measurements: a number inside a match is exempt.
#: Each pattern says what it is; keep them specific, so that a measured figure cannot hide in one.
_N = r"[−+-]?\d+(?:\.\d+)?(?:e[−-]?\d+)?°?"
_LIST = rf"{_N}(?:(?:, | / |/|–| and | or | to |…){_N})*"
SETTINGS: List[Tuple[str, str]] = [
    (r"[Ii]ssues? \d+(?:(?:, | and |–)\d+)*(?:'s)?(?:,? parts? \d+(?:(?:, | and |–)\d+)*)?", "issue and part numbers"),
    (r"\bparts? \d+(?:(?:, | and |–)\d+)*", "part numbers"),
    (r"\bseeds? \d+(?:(?:–| and |, )\d+)*", "seeds"),
    (r"\b(?:20|40|60|80)(?:(?: ?/ ?|–|, | and | or )(?:20|40|60|80))* ?%", "noise rates (the benchmark's columns)"),
    (rf"(?:label lr|network lr|lr|λ|β|ε|q|α|T|k|t|r|scale|hidden|ensemble weight)(?: ?[=≥≤∈<>] ?| )\{{?{_LIST}\}}?",
     "a hyper-parameter's value or values"),
    (r"\| (?:lr|ε|β|q|network lr|λ|label lr|filter_by) \| [^|]*\|", "the tuning table: a knob's values searched"),
    (rf"[≥≤] ?{_N}|target (?:\+|within ){_N}|within {_N} of the best", "a target or a rule's threshold"),
    (r"test tolerance[^);]*", "a test's tolerance"),
    (rf"(?:\b|~)(?:\d{{1,3}}(?: \d{{3}})+|{_N}) (?:clean samples|validation samples|samples|images|clean) a class"
     rf"|\b\d+ (?:a class|a seed|clean samples|validation answers)|meta batch(?:es of)? \d+|instead of \d+",
     "the clean set's and the meta batch's sizes"),
    (r"\bof \d+\b(?! ?%)", "a total (the columns, settings, methods there are)"),
    (r"(?:~|\b)(?:\d{1,3}(?: \d{3})+|\d+) (?:epochs|steps|inner steps|graph-free steps|rounds|round-robin rounds|"
     r"cores|CPU cores|threads?|runs|seeds|values|values each|products|images|classes|look-alike classes|methods|"
     r"settings|columns|training batches|samples|synthetic images|tests|minutes|min|workers)\b", "run settings and counts of a design"),
    (r"\bevery \d+(?: steps)?|epochs \d+(?:, \d+)*|\d+-(?:step|fold)|\d+×\d+|\bk = \d+…\d+|CG \d+", "schedules and shapes"),
    (r"(?:et al\.,?|Voice,) \d{4}", "citations"),
    (r"\(\d\)|\bstep \d\b|\bstatus \d+|\[0\d ", "enumerations, exit statuses, tutorial numbers"),
    (r"^\d+\. |\bstages? \d+|\bc \+ \d+|~\d{1,3}(?: \d{3})*",
     "list numbers, stage numbers, a class index, approximate counts"),
]

#: a number as the prose writes one (not part of a name: MNIST-1D, ResNet-18, bf16, float64)
TOKEN = re.compile(r"(?<!\w-)(?<![\w.])[−+]?\d+(?:[.,]\d+)*(?:e[−-]?\d+)?(?![\w])(?!-[A-Za-z])")


def _code_spans(lines: List[str]) -> Dict[int, List[Tuple[int, int]]]:
    """Inline code spans per line (0-based), a span broken over two lines included."""
    text = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    spans: Dict[int, List[Tuple[int, int]]] = {}
    for m in re.finditer(r"`[^`\n]*(?:\n[^`\n]*)?`", text):
        for n in range(len(lines)):
            a, b = max(m.start(), starts[n]), min(m.end(), starts[n] + len(lines[n]))
            if a < b:
                spans.setdefault(n, []).append((a - starts[n], b - starts[n]))
    return spans


def unmarked(doc: Document) -> List[str]:
    """The numbers of ``doc``'s prose outside code, links, blocks and figures that no setting pattern covers."""
    covered: Dict[int, List[Tuple[int, int]]] = {}
    for fig in doc.figures:
        covered.setdefault(fig.line - 1, []).append((fig.start, fig.end))
    skip = set()
    for block in doc.blocks:
        skip.update(range(block.body[0] - 1, block.body[1] + 1))
    fenced, out = False, []
    code = _code_spans([("" if line.startswith("```") else line) for line in doc.lines])
    for n, line in enumerate(doc.lines):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or n in skip:
            continue
        spans = covered.get(n, []) + code.get(n, [])
        for pattern in [r"<!--.*?-->", r"\]\([^)]*\)", r"https?://\S+"] + [p for p, _ in SETTINGS]:
            spans += [m.span() for m in re.finditer(pattern, line)]
        for m in TOKEN.finditer(line):
            if not any(a <= m.start() and m.end() <= b for a, b in spans):
                out.append(f"{doc.path}:{n + 1}: {m.group()!r} in ...{line[max(0, m.start() - 40):m.end() + 20]}...")
    return out


def check(root: Path = ROOT, docs: Sequence[str] = DOCS) -> List[str]:
    """Every figure or block of ``docs`` (under ``root``) that differs from the stores, every expression
    that fails, and every unmarked number that is not a setting: one line each (none: the docs are true)."""
    problems: List[str] = []
    for path in docs:
        doc = read(path, root)
        problems += differences(doc) + unmarked(doc)
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 listing every figure that "
                        "differs from its store, and every unmarked number that is not a setting")
    parser.add_argument("--root", default=str(ROOT), help="the repository whose documents are read (the stores are "
                        "always this repository's)")
    parser.add_argument("docs", nargs="*", default=list(DOCS), help="documents (default: README.md, docs/results.md)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.check:
        problems = check(root, args.docs)
        print("\n".join(problems) if problems else f"{', '.join(args.docs)}: every figure is its store's")
        return 1 if problems else 0
    failed = False
    for path in args.docs:
        doc = read(path, root)
        text, unplaced = rewrite(doc)
        for p in doc.errors + unplaced:
            print(p)
        failed |= bool(doc.errors or unplaced)
        if text != "\n".join(doc.lines):
            (root / path).write_text(text)
            print(f"{path}: rewritten")
        for p in unmarked(read(path, root)):
            print(p)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
