"""The ``labelmeta`` command: ``demo``, ``train`` and ``list``."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import torch

from .compare import compare, format_table, noise_summary, summarize
from .distributed import shutdown
from .runner import PRESETS, Config, Results, ResultsNotWritten, add_config_arguments, config_from_args, fit

#: the demo's comparison: plain cross-entropy against learned per-sample labels (default recipe)
DEMO_METHODS = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    "learned per-sample labels": dict(),
}


def _demo(args: argparse.Namespace) -> int:
    # a shortened demo keeps at least one epoch of label learning
    warmup = min(Config.warmup_epochs, args.epochs - 1)
    base = Config(epochs=args.epochs, warmup_epochs=warmup, num_samples=args.num_samples, progress=not args.no_progress)
    print(f"labelmeta demo: MNIST-1D ({base.num_samples} samples), {base.model}, {base.noise} noise "
          f"{base.noise_rate:.0%}, {base.epochs} epochs ({warmup} of warm-up), seeds {args.seeds}", flush=True)
    results = compare(base, DEMO_METHODS, seeds=args.seeds)
    print(noise_summary(results) or "noise: none")
    table = format_table(summarize(results))
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({name: [r.__dict__ for r in runs] for name, runs in results.items()}, f, indent=1)
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
                   corrected=r.corrected, clean_broken=r.clean_broken, effective_noise=r.effective_noise,
                   wall_time=r.wall_time)
    print(json.dumps(summary, indent=1), flush=True)


def _list(args: argparse.Namespace) -> int:
    from . import DATASETS, LABEL_OPTIMIZERS, LABELS, MODELS, STRATEGIES

    for title, reg in [("datasets", DATASETS), ("models", MODELS), ("labels", LABELS),
                       ("strategies", STRATEGIES), ("label optimisers", LABEL_OPTIMIZERS)]:
        print(f"{title}: {', '.join(reg.names())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a prefix such as --epoch must not silently mean --epochs
    parser = argparse.ArgumentParser(prog="labelmeta", description=__doc__, allow_abbrev=False)
    parser.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="cross-entropy vs learned labels on MNIST-1D with 40%% symmetric noise",
                          allow_abbrev=False)
    demo.add_argument("--epochs", type=_positive_int, default=Config.epochs)
    demo.add_argument("--num-samples", type=int, default=Config.num_samples)
    demo.add_argument("--seeds", type=int, nargs="+", default=[0])
    demo.add_argument("--output", default=None, help="also write all results as JSON here")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=_demo)

    train = sub.add_parser("train", help="one run of the training loop; every Config field is a flag",
                           allow_abbrev=False)
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="start from a named configuration (flags still override it)")
    add_config_arguments(train)
    train.set_defaults(run=_train)

    lst = sub.add_parser("list", help="registered datasets, models, labels, strategies, label optimisers",
                         allow_abbrev=False)
    lst.set_defaults(run=_list)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
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
    except (ValueError, OSError, FloatingPointError) as err:
        print(f"labelmeta: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
