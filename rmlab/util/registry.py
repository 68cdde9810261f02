"""One way to register the choices of an axis (paradigms, head activations, reward kinds, backbone families, dataset
adapters, benchmarks, advantage estimators, ensemble weightings) and look them up by name.

    PARADIGMS = Registry("paradigm", Paradigm)      # Paradigm: a typing.Protocol

    @PARADIGMS.register("naive")
    class Naive: ...

An entry that lacks a member of the registry's protocol is refused when it registers, and an unknown name is one
line naming the known ones. The config schema's enums list the same names; a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rmlab.errors import ConfigError, RmlabError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, protocol: type | None = None, error: type[RmlabError] = ConfigError):
        self.kind, self.protocol, self.error = kind, protocol, error
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        if self.protocol is not None:
            missing = [m for m in _members(self.protocol) if not hasattr(entry, m)]
            if missing:
                raise TypeError(f"{self.kind} {name!r} lacks {', '.join(missing)} ({self.protocol.__name__})")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register what it decorates under `name`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def get(self, name) -> T:
        name = str(name)
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def __getitem__(self, name) -> T:
        return self.get(name)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name) -> bool:
        return str(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _members(protocol: type) -> list[str]:
    """The attributes and methods a Protocol declares (what an entry must have)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_")}
    return sorted(names)
