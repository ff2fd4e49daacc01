"""A name → factory registry shared by every kind of component, with each factory's declared options."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, TypeVar

from .options import Schema

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories and their :class:`~labelmeta.options.Schema`.

    An unknown name raises ``ValueError`` listing the known ones; an unknown option raises one
    naming the component and its options (see :mod:`labelmeta.options` for how options are declared).

    Args:
        kind: what the registry holds, used in messages (e.g. ``"label parameterisation"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, Callable[..., T]] = {}
        self._schemas: Dict[str, Schema] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a class or factory function under ``name``; its keyword-only
        arguments are its options, read once here."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._schemas[name] = Schema(factory, f"{self.kind} {name!r}")
            self._entries[name] = factory
            return factory

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for components registered for a while, e.g. in a test)."""
        self.get(name)
        del self._entries[name], self._schemas[name]

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def schema(self, name: str) -> Schema:
        """The options ``name`` declares."""
        self.get(name)
        return self._schemas[name]

    def build(self, name: str, *context: Any, options: Optional[Mapping[str, Any]] = None) -> T:
        """``factory(*context, **options)`` after checking ``options`` against the declaration.

        ``context`` is what the builder supplies (positional: e.g. the annotations and the number
        of classes for labels); ``options`` the user's settings.
        """
        return self.get(name)(*context, **self.schema(name).check(options or {}))

    def describe(self, name: str) -> str:
        """``name``, the first line of its docstring and its options, for ``labelmeta list NAME``."""
        doc = (inspect.getdoc(self.get(name)) or "").split("\n\n")[0].replace("\n", " ")
        return f"{self.kind} {name!r}: {doc}\n{self.schema(name).describe()}"

    def name_of(self, obj: Any) -> Optional[str]:
        """The name ``obj``'s class is registered under (``None`` if it is not)."""
        return next((name for name in self.names() if self._entries.get(name) is type(obj)), None)

    def names(self) -> List[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
