"""Rewrite stored results written before component options were declared (issue 12) in today's layout.

Until then a ``Config`` held every component option as a flat field (``label_scale``, ``unroll_steps``,
``gce_q``, ``num_samples``...), whether the chosen component took it or not; now each component's
options live in its own dict, holding only the values that differ from the component's declared
defaults. This script changes the stored ``config`` of every run to that layout and gives every
epoch record all of :class:`~labelmeta.records.EpochRecord`'s fields (``None`` where a method has
no such figure). It changes no measured number: ``python benchmarks/migrate_results.py --check``
verifies that every number in a file is unchanged. ``noisy_labels.py`` compares a stored run's
config with the one it would run, so migrated cells count as done.

    python benchmarks/migrate_results.py benchmarks/results/*.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

from labelmeta import Config, EpochRecord
from labelmeta.config import COMPONENTS

#: old flat field -> (the Config field of the component, the option), when the component declares it
MOVED = {
    "num_samples": ("dataset", "num_samples"),
    "label_scale": ("labels", "scale"), "ensemble_weight": ("labels", "weight"),
    "ensemble_momentum": ("labels", "momentum"), "smoothing": ("labels", "smoothing"),
    "gce_q": ("loss", "q"), "bootstrap_beta": ("loss", "beta"),
    "distill_temperature": ("loss", "temperature"), "distill_alpha": ("loss", "alpha"),
    "unroll_steps": ("strategy", "steps"), "unroll_through": ("strategy", "through"),
    "head_module": ("strategy", "head"), "fd_scale": ("strategy", "scale"),
    "label_normalize": ("label_optimizer", "normalize"),
}


def migrate_config(old: Dict[str, Any]) -> Dict[str, Any]:
    """An old flat config dict in today's layout (options kept where the component declares them
    and the value differs from its default; ``None`` meant "the component's default")."""
    new = {k: v for k, v in old.items() if k not in MOVED}
    for component in COMPONENTS:
        name = old.get(component.name_field)
        options: Dict[str, Any] = {}
        if name is not None and name != "none" and name in component.registry:
            schema = component.registry.schema(name)
            for field, (owner, option) in MOVED.items():
                value = old.get(field)
                if owner == component.name_field and option in schema.options and value is not None \
                        and value != schema.options[option].default:
                    options[option] = list(value) if isinstance(value, tuple) else value
        new[component.options_field] = options
    unknown = set(new) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"fields no Config has: {sorted(unknown)}")
    return new


def migrate(node: Any) -> Any:
    """Every stored run in ``node`` (nested dicts and lists) migrated."""
    if isinstance(node, list):
        return [migrate(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: migrate(v) for k, v in node.items()}
    if isinstance(out.get("config"), dict) and "label_scale" in out["config"]:
        out["config"] = migrate_config(out["config"])
    if isinstance(out.get("history"), list) and out["history"] and isinstance(out["history"][0], dict):
        names = [f.name for f in dataclasses.fields(EpochRecord)]
        out["history"] = [{name: h.get(name) for name in names} for h in out["history"]]
    return out


def numbers(node: Any, path: str = "") -> List[tuple]:
    """Every number in ``node`` outside a ``config``, with where it is."""
    if isinstance(node, dict):
        return [n for k, v in node.items() if k != "config" for n in numbers(v, f"{path}/{k}")]
    if isinstance(node, list):
        return [n for i, v in enumerate(node) for n in numbers(v, f"{path}/{i}")]
    return [(path, json.dumps(node))] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report whether the numbers would change")
    args = parser.parse_args(argv)
    for path in args.files:
        before = json.loads(path.read_text())
        after = migrate(before)
        same = dict(numbers(before)) == dict(numbers(after))
        print(f"{path}: {len(numbers(before))} numbers, {'unchanged' if same else 'CHANGED'}")
        if not same:
            return 1
        if not args.check and after != before:
            path.write_text(json.dumps(after, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
