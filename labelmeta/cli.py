"""The ``labelmeta`` command: ``demo``, ``train`` and ``list``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import torch

from .compare import compare, format_table, noise_summary, summarize
from .distributed import shutdown
from .runner import PRESETS, Config, add_config_arguments, config_from_args, fit

#: the demo's comparison: plain cross-entropy against learned per-sample labels (default recipe)
DEMO_METHODS = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    "learned per-sample labels": dict(),
}


def _demo(args: argparse.Namespace) -> int:
    base = Config(epochs=args.epochs, num_samples=args.num_samples, progress=not args.no_progress)
    print(f"labelmeta demo: MNIST-1D ({base.num_samples} samples), {base.model}, {base.noise} noise "
          f"{base.noise_rate:.0%}, {base.epochs} epochs, seeds {args.seeds}", flush=True)
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
    r = fit(config)
    # under torchrun: leave the process group on success only (after a failure, a collective
    # teardown would wait for the processes that are still running)
    shutdown()
    summary = dict(best_accuracy=r.best_accuracy, best_epoch=r.best_epoch, last_accuracy=r.last_accuracy,
                   corrected=r.corrected, clean_broken=r.clean_broken, effective_noise=r.effective_noise,
                   wall_time=r.wall_time)
    print(json.dumps(summary, indent=1))
    return 0


def _list(args: argparse.Namespace) -> int:
    from . import DATASETS, LABEL_OPTIMIZERS, LABELS, MODELS, STRATEGIES

    for title, reg in [("datasets", DATASETS), ("models", MODELS), ("labels", LABELS),
                       ("strategies", STRATEGIES), ("label optimisers", LABEL_OPTIMIZERS)]:
        print(f"{title}: {', '.join(reg.names())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelmeta", description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="cross-entropy vs learned labels on MNIST-1D with 40%% symmetric noise")
    demo.add_argument("--epochs", type=int, default=Config.epochs)
    demo.add_argument("--num-samples", type=int, default=Config.num_samples)
    demo.add_argument("--seeds", type=int, nargs="+", default=[0])
    demo.add_argument("--output", default=None, help="also write all results as JSON here")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=_demo)

    train = sub.add_parser("train", help="one run of the training loop; every Config field is a flag")
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="start from a named configuration (flags still override it)")
    add_config_arguments(train)
    train.set_defaults(run=_train)

    lst = sub.add_parser("list", help="registered datasets, models, labels, strategies, label optimisers")
    lst.set_defaults(run=_list)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"labelmeta: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
