"""The ``labelmeta`` command: ``demo``, ``train``, ``plot``, ``issues`` and ``list``; command-line flags <-> ``Config``.

Every :class:`~labelmeta.config.Config` field is a flag (``snake_case`` -> ``--kebab-case``), and
every option a registered component declares is one too, prefixed by its kind: ``--label-scale``,
``--strategy-steps``, ``--loss-q``, ``--data-num-samples``, ``--model-channels``,
``--label-opt-normalize``. ``--import FILE_OR_MODULE`` (before the command) loads a file that
registers components of its own; their options become flags the same way.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import json
import sys
import textwrap
import tokenize
import traceback
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .checks import NAMED_FIELDS
from .compare import compare, format_table, noise_summary, summarize
from .config import COMPONENTS, Component, Config
from .distributed import shutdown
from .eventlog import MissingExtra
from .health import classes_of_run, format_health, label_health
from .label_issues import issues_path, read_label_issues
from .plots import load_run, plot_runs
from .presets import PRESETS
from .records import Results, ResultsNotWritten
from .runner import fit
from .strategies import BACKENDS, DEFAULT_STRATEGY, STRATEGIES, TARGETS

#: the demo's comparison: plain cross-entropy against the default (detect-correct: weights detect on the
#: annotations, the rejected samples' labels learn)
DEMO_METHODS = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    "detect, then correct (default)": dict(),
}
_OPTION_FIELDS = {c.options_field for c in COMPONENTS}


def _demo(args: argparse.Namespace) -> int:
    # a shortened demo keeps at least one epoch of label learning
    warmup = min(Config.warmup_epochs, args.epochs - 1)
    base = Config(epochs=args.epochs, warmup_epochs=warmup, dataset_options={"num_samples": args.num_samples},
                  progress=not args.no_progress)
    print(f"labelmeta demo: MNIST-1D ({args.num_samples} samples), {base.model}, {base.noise} noise "
          f"{base.noise_rate:.0%}, {base.epochs} epochs ({warmup} of warm-up), seeds {args.seeds}", flush=True)
    results = compare(base, DEMO_METHODS, seeds=args.seeds)
    print(noise_summary(results) or "noise: none")
    print(format_table(summarize(results), time_relative_to="cross-entropy"))
    if len(args.seeds) == 1:
        print("One seed: plain figures. `labelmeta demo --seeds 0 1 2` gives mean ± std; the noisy-label "
              "benchmark (python benchmarks/noisy_labels.py, benchmarks/results/noisy_labels.md) compares every "
              "method over seeds, datasets and noise settings.")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({name: [dataclasses.asdict(r) for r in runs] for name, runs in results.items()}, f, indent=1)
    return 0


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(args, PRESETS[args.preset] if args.preset else None)
    try:
        r = fit(config)
    except ResultsNotWritten as err:  # the run finished: show what it measured, then the error
        _print_summary(err.results)
        raise
    # under torchrun: leave the process group on success only (after a failure, a collective
    # teardown would wait for the processes that are still running)
    shutdown()
    _print_summary(r)
    return 0


def _print_summary(r: Results) -> None:
    summary = dict(best_accuracy=r.best_accuracy, best_epoch=r.best_epoch, last_accuracy=r.last_accuracy,
                   corrected=r.corrected, clean_broken=r.clean_broken, detect_f1=r.detect_f1,
                   effective_noise=r.effective_noise,
                   wall_time=r.wall_time)
    print(json.dumps(summary, indent=1), flush=True)


def _plot(args: argparse.Namespace) -> int:
    for path in plot_runs(args.runs, args.out, args.names):
        print(path)
    return 0


def _issues(args: argparse.Namespace) -> int:
    issues = read_label_issues(args.results)
    order = issues.ranking()
    print(f"{issues_path(args.results)}: {len(issues)} training samples, {int(issues.flagged.sum())} flagged")
    if issues.true is not None:
        s = issues.stats()
        print(f"against the truth ({s.corrupted} corrupted): precision {s.precision:.3f}, recall {s.recall:.3f}, "
              f"F1 {s.f1:.3f}, average precision {s.average_precision:.3f}; checking the {s.corrupted} most suspect "
              f"misses {s.false_negative_rate_at_budget:.1%} of them")
    # the issues CSV is enough on its own: the run's JSON only names and counts the classes
    run = load_run(args.results) if Path(args.results).exists() else None
    num_classes, names = classes_of_run(run, issues)
    if args.summary:
        print()
        print(format_health(label_health(issues, num_classes, names), top=args.top))
        return 0
    shown = order[:args.top].tolist()
    name = (lambda c: names[c]) if names else str  # noqa: E731
    width = max([9] + [len(n) for n in names or ()])
    source = issues.source_index if issues.source_index is not None else torch.arange(len(issues))
    print(f"the {len(shown)} most suspect (source: the sample's place in its dataset, e.g. the row of your file):")
    print(f"rank  index  source  {'annotated':>{width}}  {'suggested':>{width}}  probability   score  flagged"
          + ("  true" if issues.true is not None else "") + ("  evidence" if issues.evidence is not None else ""))
    for rank, i in enumerate(shown, start=1):
        row = (f"{rank:4d}  {i:5d}  {int(source[i]):6d}  {name(int(issues.annotated[i])):>{width}}  "
               f"{name(int(issues.suggested[i])):>{width}}  {float(issues.suggested_probability[i]):11.3f}  "
               f"{float(issues.score[i]):6.4f}  {'yes' if issues.flagged[i] else 'no':>7}")
        row += f"  {name(int(issues.true[i])):>4}" if issues.true is not None else ""
        print(row + (f"  {issues.evidence_text(i)}" if issues.evidence is not None else ""))
    if issues.evidence is not None:
        print("evidence: the clean samples (their places in the dataset) whose gradient argues most against the "
              "annotation (labelmeta.evidence)")
    return 0


def _list(args: argparse.Namespace) -> int:
    kinds = [(c.registry.kind, c) for c in COMPONENTS]
    if args.name is None:
        for title, component in kinds:
            if component.name_field == "strategy":
                _list_strategies()
                continue
            print(f"{component.name_field} ({title}): {', '.join(component.registry.names())}")
        for field_name, registry in NAMED_FIELDS.items():
            print(f"{field_name} ({registry.kind}): {', '.join(registry.names())}")
        print("`labelmeta list NAME` shows a component's options")
        return 0
    found = [c for _, c in kinds if args.name in c.registry]
    named = [(f, r) for f, r in NAMED_FIELDS.items() if args.name in r]
    if args.name in TARGETS:  # a target is a strategy's half: say how to pair it
        print(TARGETS.describe(args.name))
        print(f"  select with --strategy BACKEND:{args.name} (backends: {', '.join(BACKENDS.names())}); "
              f"its options are --strategy-OPTION flags")
    elif not found and not named:
        raise ValueError(f"no component is called {args.name!r}; `labelmeta list` shows them all")
    for c in found:
        print(c.registry.describe(args.name))
        flags = " ".join(f"--{_flag(c, name)}" for name in c.registry.schema(args.name).names())
        print(f"  select with --{_kebab(c.name_field)} {args.name}" + (f"; set with {flags}" if flags else ""))
    for field_name, registry in named:
        print(registry.describe(args.name))
        print(f"  select with --{_kebab(field_name)} {args.name}")
    return 0


def _list_strategies() -> None:
    """Strategies in three lines: the presets, the backends (each alone learns the labels), the targets."""
    presets = [n for n in STRATEGIES.names() if ":" not in n and n not in BACKENDS]
    print(f"strategy presets: {', '.join(n + (' (default)' if n == DEFAULT_STRATEGY else '') for n in presets)}")
    print(f"strategy backends (alone: with the labels target): {', '.join(BACKENDS.names())}")
    print(f"strategy targets (as --strategy BACKEND:TARGET): {', '.join(TARGETS.names())}")


# ---------------------------------------------------------------------------------------------
# Config <-> command-line flags

def _kebab(name: str) -> str:
    return name.replace("_", "-")


#: flags of earlier versions, by the flag that now does their job: ``--noise-matrix FILE`` (Config.noise_matrix,
#: before noise kinds declared options) is the matrix kind's path
LEGACY_FLAGS: Dict[str, Tuple[str, ...]] = {"noise-path": ("--noise-matrix",)}


def _flag(component: Component, option: str) -> str:
    return f"{component.flag_prefix}-{_kebab(option)}"


def _dest(component: Component, option: str) -> str:
    return f"{component.options_field}.{option}"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`Config` field and per declared option of every registered component.

    Flags that are not given stay out of the parsed namespace, so that :func:`config_from_args`
    can apply them on top of any base configuration (a preset, or ``Config()``'s defaults).
    """
    defaults, hints, described = Config(), typing.get_type_hints(Config), field_descriptions(Config)
    for f in dataclasses.fields(Config):
        if f.name in _OPTION_FIELDS:
            continue
        flag, kind = "--" + _kebab(f.name), hints[f.name]
        default = f"default: {getattr(defaults, f.name)}"
        help_text = (f"{described[f.name]} ({default})" if f.name in described else default).replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif typing.get_origin(kind) is typing.Literal or f.name in NAMED_FIELDS:  # checked by check_config
            choices = NAMED_FIELDS[f.name].names() if f.name in NAMED_FIELDS else typing.get_args(kind)
            parser.add_argument(flag, metavar="{" + ",".join(choices) + "}", default=argparse.SUPPRESS,
                                help=help_text)
        else:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            parse = args[0] if typing.get_origin(kind) is typing.Union else kind
            parser.add_argument(flag, type=_optional(parse) if args else parse, default=argparse.SUPPRESS,
                                metavar=parse.__name__.upper(), help=help_text)
    for component in COMPONENTS:
        group = parser.add_argument_group(
            f"{component.registry.kind} options (of the one --{_kebab(component.name_field)} names; "
            f"`labelmeta list NAME` describes them)")
        takers: Dict[str, List[str]] = {}
        for name in component.registry.names():
            for option in component.registry.schema(name).names():
                takers.setdefault(option, []).append(name)
        for option, names in takers.items():
            first = component.registry.schema(names[0]).options[option]
            group.add_argument("--" + _flag(component, option), *LEGACY_FLAGS.get(_flag(component, option), ()),
                               dest=_dest(component, option),
                               default=argparse.SUPPRESS, metavar=first.type_name.upper().replace(" ", "_"),
                               help=f"{', '.join(_takers_shown(option, names))}: {first.help}".replace("%", "%%"))


def field_descriptions(cls: type) -> Dict[str, str]:
    """A dataclass's field descriptions, from the ``#:`` comments of its source (as Sphinx reads them):
    the comment lines right above a field and a comment trailing its line(s), joined, with the
    reStructuredText double backquotes removed. Fields without one are absent, and so is everything
    when the source cannot be read (a frozen application): the flags then show only their defaults."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: Dict[int, str] = {}  # line number -> the text of its "#:" comment
    code_lines = set()  # lines holding code (a comment above a field must be on a line of its own)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.string.startswith("#:"):
            comments[token.start[0]] = token.string[2:].strip()
        elif token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.update(range(token.start[0], token.end[0] + 1))
    [node] = ast.parse(source).body
    found: Dict[str, str] = {}
    for statement in node.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above, line = [], statement.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        trailing = [comments[n] for n in range(statement.lineno, statement.end_lineno + 1) if n in comments]
        text = " ".join(t for t in above + trailing if t).replace("``", "")
        if text:
            found[statement.target.id] = text
    return found


def _takers_shown(option: str, names: List[str]) -> List[str]:
    """The components that take ``option``, as its help names them: a strategy pair only by its target
    (``BACKEND:weights``), when the option is the target's; the backends' options are named by the backends."""
    pairs = [n.split(":", 1)[1] for n in names if ":" in n and option in TARGETS.schema(n.split(":", 1)[1]).options]
    return [n for n in names if ":" not in n] + [f"BACKEND:{t}" for t in dict.fromkeys(pairs)]


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with ``none`` meaning ``None`` (for ``Optional`` fields)."""
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)
    convert.__name__ = parse.__name__
    return convert


def config_from_args(args: argparse.Namespace, base: Optional[Config] = None) -> Config:
    """``base`` (default ``Config()``) with the fields and component options given as flags replaced.

    A component's options from ``base`` are kept only if the flags keep the component; an option
    flag the chosen component does not declare is a ``ValueError`` naming both.
    """
    base = base if base is not None else Config()
    given = vars(args)
    changes = {f.name: given[f.name] for f in dataclasses.fields(Config) if f.name in given}
    for component in COMPONENTS:
        name = changes.get(component.name_field, getattr(base, component.name_field))
        before = getattr(base, component.options_field)
        options = dict(before) if name == getattr(base, component.name_field) else {}
        texts = {key.split(".", 1)[1]: text for key, text in given.items()
                 if key.startswith(component.options_field + ".")}
        for option, text in texts.items():
            schema = component.registry.schema(name)
            if option not in schema.options:
                valid = ", ".join(f"--{_flag(component, o)}" for o in schema.names()) or "none"
                raise ValueError(f"--{_flag(component, option)} is not an option of {schema.what}; its options: {valid}")
            options[option] = schema.options[option].parse(text, schema.what)
        if options != before:
            changes[component.options_field] = options
    return base.replace(**changes)


def import_components(target: str) -> None:
    """Import a module by name, or a ``.py`` file by path, so that its components register themselves.

    Whatever the import raises (a ``SyntaxError``, any exception the code raises as it runs) is
    passed on; :func:`import_error` says it in one line.
    """
    path = Path(target)
    if target.endswith(".py"):
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {target!r}")
        spec = importlib.util.spec_from_file_location(f"labelmeta_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]  # as a failed import does: no half-made module is left behind
            raise
    else:
        importlib.import_module(target)


def import_error(target: str, err: BaseException) -> str:
    """``err``, raised by :func:`import_components` for ``target``, in one line: its type, its message
    and where it was raised: ``(FILE, line N)``, the last line of ``target``'s own file in the
    traceback, else the last line outside labelmeta and the import machinery (a ``SyntaxError``
    carries its own place); no place if the error is the import machinery's (no such module)."""
    if isinstance(err, SyntaxError):  # raised by the compiler: the place is the error's, not a frame's
        return f"{type(err).__name__}: {err.msg} ({err.filename}, line {err.lineno})"
    skip = (Path(__file__).resolve().parent, Path(importlib.__file__).resolve().parent)  # labelmeta, importlib
    frames = [f for f in traceback.extract_tb(err.__traceback__)  # "<frozen importlib...>": the import system
              if not f.filename.startswith("<") and not any(d in Path(f.filename).resolve().parents for d in skip)]
    own = _source_file(target)
    in_own = [f for f in frames if own is not None and Path(f.filename).resolve() == own]
    where = (in_own or frames)[-1:]
    place = f" ({where[0].filename}, line {where[0].lineno})" if where else ""
    return f"{type(err).__name__}: {err}{place}"


def _source_file(target: str) -> Optional[Path]:
    """The file ``--import target`` runs: the ``.py`` path, or the module's source (``None`` if unknown)."""
    if target.endswith(".py"):
        return Path(target).resolve()
    try:
        spec = importlib.util.find_spec(target)
    except Exception:  # a parent package that fails to import, a malformed name: no file to prefer
        return None
    return Path(spec.origin).resolve() if spec is not None and spec.origin else None


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a prefix such as --epoch must not silently mean --epochs
    parser = argparse.ArgumentParser(prog="labelmeta", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="a .py file or module that registers components (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="cross-entropy vs learned labels on MNIST-1D with 40%% symmetric noise",
                          allow_abbrev=False)
    demo.add_argument("--epochs", type=_positive_int, default=Config.epochs)
    demo.add_argument("--num-samples", type=int, default=10000, help="MNIST-1D samples (80%% train, 20%% test)")
    demo.add_argument("--seeds", type=int, nargs="+", default=[0])
    demo.add_argument("--output", default=None, help="also write all results as JSON here")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=_demo)

    train = sub.add_parser("train", help="one run of the training loop; every Config field and component option "
                           "is a flag", allow_abbrev=False)
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="start from a named configuration (flags still override it)")
    add_config_arguments(train)
    train.set_defaults(run=_train)

    plot = sub.add_parser("plot", help="figures of one or several runs (the JSON of train --output): curves.png, "
                          "and the learned label matrix of a run of per-class labels",
                          allow_abbrev=False)
    plot.add_argument("runs", nargs="+", metavar="RUN.json")
    plot.add_argument("--out", default="plots", help="folder for the PNG files (default: plots)")
    plot.add_argument("--names", nargs="+", default=None, help="a legend name per run (default: the file names)")
    plot.set_defaults(run=_plot)

    issues = sub.add_parser("issues", help="the label issues a run found (RUN.issues.csv beside the JSON of "
                            "train --output): how well they match the truth, and the most suspect samples",
                            allow_abbrev=False)
    issues.add_argument("results", metavar="RUN.json")
    issues.add_argument("--top", type=_positive_int, default=20,
                        help="how many of the most suspect samples (with --summary: confused class pairs) to show")
    issues.add_argument("--summary", action="store_true",
                        help="the dataset's label health instead of the samples: the estimated noise matrix "
                        "(annotated x suggested class), the most confused pairs, the noise rate per class, "
                        "each beside the truth where it is known")
    issues.set_defaults(run=_issues)

    lst = sub.add_parser("list", help="the registered components; with NAME, that component's options",
                         allow_abbrev=False)
    lst.add_argument("name", nargs="?", default=None, metavar="NAME")
    lst.set_defaults(run=_list)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # components a user file registers must exist before the flags are built from the registries
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--import", dest="imports", action="append", default=[])
    known, _ = early.parse_known_args(argv)
    for target in known.imports:
        try:
            import_components(target)
        except Exception as err:  # the user's code ran: whatever it raised, the import failed
            print(f"labelmeta: error: cannot import {target!r}: {import_error(target, err)}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    show = warnings.showwarning

    def show_ours(message, category, filename, lineno, file=None, line=None) -> None:
        if "labelmeta" in Path(filename).parts:  # the library's own: one readable line each
            print(f"labelmeta: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_ours
    try:
        return args.run(args)
    except (ValueError, OSError, FloatingPointError, MissingExtra) as err:
        print(f"labelmeta: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
