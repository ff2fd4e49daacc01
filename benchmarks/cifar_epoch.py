"""One epoch of the ``cifar10`` preset end to end, on a synthetic CIFAR-10 in torchvision's format.

    python benchmarks/cifar_epoch.py --device cuda     # 50 000 images, the preset's loader workers, a GPU
    python benchmarks/cifar_epoch.py --device cuda --compare-workers   # and the same without loader workers
    python benchmarks/cifar_epoch.py --smoke           # CPU, 64 images, a small WRN: what the test suite runs

Writes random images (uint8, 10 classes in turn) with ``labelmeta.data.files.write_cifar10`` under
``--data-root`` (kept there for the next run), then trains one epoch of the preset (meta steps from
the first step: ``warmup_epochs=0``) for each row: cross-entropy alone, the preset's learned labels,
the same with bf16 autocast (``--amp``), and the ``cifar10n`` preset (the noisy-label default on
human annotations read from a ``CIFAR-10_human.pt`` in CIFAR-N's format, written beside the images
with 40 % of the labels moved); with ``--compare-workers``, cross-entropy and the preset
again with no loader workers (images decoded and augmented in the main process: what the workers
save). Reports training images/s (the epoch without its evaluation), the epoch time relative to
cross-entropy's (with the preset's workers), and on a GPU the peak memory
(``torch.cuda.max_memory_allocated``). Random pixels carry no signal: accuracy is not the point.
Writes ``cifar_epoch[_smoke][_<device>].{md,json}`` under ``--out``, after each row (a run stopped
early leaves the rows it finished).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import machine, run_arguments, write_outputs

from labelmeta import Config, fit
from labelmeta.presets import PRESETS
from labelmeta.data.files import write_cifar10

ROWS = {
    "cross-entropy": dict(labels="one-hot", strategy="none"),
    "preset (learned per-class labels)": dict(),
    "preset + bf16 autocast": dict(amp=True),
}
CIFAR10N = "cifar10n preset (CIFAR-N annotation file; learned labels + weights)"
#: the cifar10n preset's changes to the cifar10 preset's (its human annotations, the noisy-label default)
ROWS[CIFAR10N] = {f.name: getattr(PRESETS["cifar10n"], f.name) for f in dataclasses.fields(Config)
                  if getattr(PRESETS["cifar10n"], f.name) != getattr(PRESETS["cifar10"], f.name)
                  and f.name not in ("epochs", "warmup_epochs")}
#: ``--compare-workers``: the first two rows again, loading in the main process
NO_WORKERS = {
    "cross-entropy, no loader workers": dict(labels="one-hot", strategy="none", workers=0, persistent_workers=False),
    "preset, no loader workers": dict(workers=0, persistent_workers=False),
}


def synthetic_cifar(root: Path, images: int, test: int = 10_000) -> None:
    """Random CIFAR-10 files under ``root`` unless files of that size are there already, and a CIFAR-N
    annotation file for them (``CIFAR-10_human.pt``: ``clean_label``, and ``worse_label`` with 40 % of the
    labels moved to another class)."""
    marker = root / f".synthetic-{images}-{test}"
    if marker.exists():
        return
    rng = np.random.default_rng(0)
    write_cifar10(root, rng.integers(0, 256, (images, 3072), dtype=np.uint8), np.arange(images) % 10,
                  rng.integers(0, 256, (test, 3072), dtype=np.uint8), np.arange(test) % 10)
    clean = np.arange(images) % 10
    worse = np.where(rng.random(images) < 0.4, (clean + rng.integers(1, 10, images)) % 10, clean)
    torch.save({"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy()}, root / "CIFAR-10_human.pt")
    marker.touch()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=50_000, help="training images")
    parser.add_argument("--data-root", default=str(Path(tempfile.gettempdir()) / "labelmeta-synthetic-cifar10"))
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the preset's)")
    parser.add_argument("--compare-workers", action="store_true",
                        help="also run cross-entropy and the preset with no loader workers")
    run_arguments(parser, seeds=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = PRESETS["cifar10"].replace(device=args.device, epochs=1, warmup_epochs=0, progress=False,
                                      data_root=args.data_root)
    test_images = 10_000
    if args.smoke:
        args.images, test_images = 64, 20  # and a small wide ResNet: a CPU runs ResNet-18's unroll slowly
        base = base.replace(batch_size=16, meta_batch_size=16, workers=0, pin_memory=False, model="wrn",
                            model_options=dict(depth=10, width=1))
    if args.workers is not None:
        base = base.replace(workers=args.workers)
    synthetic_cifar(Path(args.data_root), args.images, test_images)

    rows = {**ROWS, **(NO_WORKERS if args.compare_workers else {})}
    command = "python benchmarks/cifar_epoch.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict = {}
    for name, overrides in rows.items():
        if args.smoke and name == CIFAR10N:  # 6 images a class: a meta set of 2 a class, the smoke's batches
            overrides = {**overrides, "meta_per_class": 2, "meta_batch_size": 16}
        config = base.replace(**overrides)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(args.device)
        run = fit(config)
        epoch = run.history[0]
        # the images trained on: a clean meta split held out (cifar10n) is not
        trained = args.images - (10 * config.meta_per_class if config.meta_source == "clean" else 0)
        results[name] = dict(seconds=epoch.seconds, images=trained, images_per_second=trained / epoch.seconds,
                             workers=config.workers, peak_memory=torch.cuda.max_memory_allocated(args.device)
                             if args.device.startswith("cuda") else None)
        lines = report(results, args, base, command)  # after each row: a run stopped early keeps what it measured
    print("\n".join(lines))
    return 0


def report(results: dict, args: argparse.Namespace, base, command: str) -> list:
    """Write the rows measured so far (``cifar_epoch[_smoke][_<device>].{md,json}``); the report's lines."""
    plain = results["cross-entropy"]["seconds"]
    none = " (none in the rows that say so)" if any(r["workers"] == 0 for r in results.values()) and base.workers else ""
    lines = ["# One epoch of the cifar10 preset", "",
             f"Command: `{command.strip()}`; {machine(args.device)}; {args.images} synthetic training images, "
             f"batch {base.batch_size}, meta batch {base.meta_batch_size}, strategy `{base.strategy}` every "
             f"{base.meta_every} step(s), {base.workers} loader worker(s){none}, "
             f"channels-last {base.channels_last}.", "",
             "| run | epoch (s) | images/s | × cross-entropy time | peak memory (MB) |", "|---|---|---|---|---|"]
    for name, r in results.items():
        memory = "–" if r["peak_memory"] is None else f"{r['peak_memory'] / 2**20:.0f}"
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['images_per_second']:.0f} | {r['seconds'] / plain:.2f} | {memory} |")
    lines.append("")
    stem = "cifar_epoch" + ("_smoke" if args.smoke else "") + ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
    write_outputs(Path(args.out), stem, "\n".join(lines), {"machine": machine(args.device), "images": args.images,
                                                         "config": base.__dict__, "results": results})
    return lines


if __name__ == "__main__":
    sys.exit(main())
