"""Declared options: a component's settings, read once from its keyword-only constructor arguments.

Every registered component (label parameterisation, strategy, training loss, label optimiser,
dataset, model) declares its options in one place, its signature::

    @LABELS.register("per-sample")
    class PerSample(LabelParameterization):
        def __init__(self, targets, num_classes, *, scale: float = 4.0) -> None: ...

Positional arguments are what the builder supplies (the annotations, the data shape...); each
keyword-only argument with a type annotation and a default is an option. Its help is the line
the docstring's ``Args:`` section gives it. :class:`Schema` checks a dict of options against the
declaration: an unknown name or a value of the wrong type is a ``ValueError`` naming the
component and its options, and command-line text is converted by the declared type.
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

@dataclass(frozen=True)
class Option:
    """One declared option: its name, type annotation, default and help text."""

    name: str
    type: Any
    default: Any
    help: str = ""

    @property
    def type_name(self) -> str:
        """The type as a user reads it: ``float``, ``int or none``, ``{batch,row,none}``, ``ints``."""
        base, optional = _unwrap_optional(self.type)
        if typing.get_origin(base) is typing.Literal:
            text = "{" + ",".join(str(c) for c in typing.get_args(base)) + "}"
        elif _is_int_sequence(base):
            text = "ints"
        else:
            text = getattr(base, "__name__", str(base))
        return f"{text} or none" if optional else text

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it has the declared type (an int is accepted for a float), else ``ValueError``."""
        base, optional = _unwrap_optional(self.type)
        if value is None:
            if optional:
                return None
            raise ValueError(f"{where} option {self.name!r} takes {self.type_name}, got None")
        if typing.get_origin(base) is typing.Literal:
            if value not in typing.get_args(base):
                raise ValueError(f"{where} option {self.name!r} takes one of {self.type_name}, got {value!r}")
            return value
        if _is_int_sequence(base):
            if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return tuple(value)
        elif base is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
        elif base is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(value, base):
            return value
        raise ValueError(f"{where} option {self.name!r} takes {self.type_name}, got {value!r}")

    def parse(self, text: str, where: str) -> Any:
        """Command-line ``text`` converted to the declared type (``none`` for ``None``)."""
        base, optional = _unwrap_optional(self.type)
        if optional and text.lower() == "none":
            return None
        try:
            if _is_int_sequence(base):
                value: Any = tuple(int(part) for part in text.replace(",", " ").split())
            elif base is bool:
                value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
            elif typing.get_origin(base) is typing.Literal:
                value = text
            else:
                value = base(text)
        except (ValueError, KeyError):
            raise ValueError(f"{where} option {self.name!r} takes {self.type_name}, got {text!r}") from None
        return self.check(value, where)


def _unwrap_optional(annotation: Any) -> Tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return annotation, False


def _is_int_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (tuple, list, collections.abc.Sequence) \
        and typing.get_args(annotation)[:1] == (int,)


class Schema:
    """The options a component declares, in declaration order.

    Args:
        factory: the registered class or function.
        what: how errors name it, e.g. ``"label parameterisation 'per-sample'"``.
    """

    def __init__(self, factory: Callable, what: str) -> None:
        self.what = what
        target = factory.__init__ if inspect.isclass(factory) else factory
        signature = inspect.signature(target)
        try:
            hints = typing.get_type_hints(target)
        except Exception as err:  # an annotation that does not resolve: say where
            raise TypeError(f"{what}: cannot read the type annotations of its options ({err})") from None
        helps = _docstring_args(inspect.getdoc(factory) or "")
        self.options: Dict[str, Option] = {}
        for p in signature.parameters.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            if p.default is inspect.Parameter.empty or p.name not in hints:
                raise TypeError(f"{what}: option {p.name!r} needs a type annotation and a default")
            self.options[p.name] = Option(p.name, hints[p.name], p.default, helps.get(p.name, ""))

    @classmethod
    def union(cls, what: str, *schemas: "Schema") -> "Schema":
        """One schema holding the options of ``schemas`` (e.g. a strategy's: its backend's and its
        target's); ``TypeError`` if two declare one name differently."""
        merged = cls.__new__(cls)
        merged.what, merged.options = what, {}
        for schema in schemas:
            for name, option in schema.options.items():
                seen = merged.options.get(name)
                if seen is not None and (seen.type, seen.default) != (option.type, option.default):
                    raise TypeError(f"{what}: option {name!r} is declared twice, differently "
                                    f"({seen.type_name} = {seen.default!r}, {option.type_name} = {option.default!r})")
                merged.options.setdefault(name, option)
        return merged

    def names(self) -> List[str]:
        """The declared option names."""
        return list(self.options)

    def check(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """``values`` checked against the declaration (``ValueError`` naming the offending option)."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{self.what} options must be a dict, got {type(values).__name__}")
        unknown = sorted(set(values) - set(self.options))
        if unknown:
            valid = ", ".join(self.options) if self.options else "it has none"
            raise ValueError(f"{self.what} has no option {', '.join(map(repr, unknown))}; its options: {valid}")
        return {name: self.options[name].check(value, self.what) for name, value in values.items()}

    def resolve(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Every option's value: the declared defaults with ``values`` (checked) applied."""
        return {**{name: o.default for name, o in self.options.items()}, **self.check(values)}

    def describe(self) -> str:
        """One line per option: ``name (type, default ...): help``."""
        if not self.options:
            return "  (no options)"
        return "\n".join(f"  {o.name} ({o.type_name}, default {o.default!r})" + (f": {o.help}" if o.help else "")
                         for o in self.options.values())


def _docstring_args(doc: str) -> Dict[str, str]:
    """``name -> text`` from a Google-style ``Args:`` section (continuation lines joined)."""
    out: Dict[str, str] = {}
    match = re.search(r"^Args:\s*$(.*?)(?=^\S|\Z)", doc, flags=re.M | re.S)
    if not match:
        return out
    name: Optional[str] = None
    for line in match.group(1).splitlines():
        item = re.match(r"^\s{2,4}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if item:
            name = item.group(1)
            out[name] = item.group(2).strip()
        elif name and line.strip():
            out[name] += " " + line.strip()
    return out


__all__ = ["Option", "Schema"]


def check_count(name: str, value: float) -> int:
    """``value`` as an ``int`` if it is a whole number >= 1 (a width, a number of steps), else
    ``ValueError`` naming ``name`` and ``value``."""
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_natural(name: str, value: float) -> int:
    """``value`` as an ``int`` if it is a whole number >= 0 (a count that may be none: graph-free
    steps, steps per checkpointed segment with 0 for off), else ``ValueError`` naming ``name`` and ``value``."""
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_range(name: str, value: float, low: float, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float if it lies between ``low`` and ``high``, else ``ValueError`` naming ``name``
    and ``value``. The interval is ``[low, high)`` by default (``low_open``/``high_open`` change its
    ends); NaN lies in none, and neither does an infinite value (an unbounded end is always open).

    The one check of a numeric setting's domain: component options, ``Config`` fields, the noise rate.
    """
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if above and below and math.isfinite(value):
        return float(value)
    if math.isinf(high):  # a half-line reads better as a bound
        finite = "finite and " if not math.isfinite(value) else ""  # NaN and infinities alike
        raise ValueError(f"{name} must be {finite}{'>' if low_open else '>='} {low:g}, got {value}")
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise ValueError(f"{name} must lie in {interval}, got {value}")
