"""A checked name -> class registry: duplicate names raise, unknown names suggest the nearest."""
from __future__ import annotations

import difflib
from typing import Callable


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered (by {self._items[name].__qualname__})")
            self._items[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type:
        if name not in self._items:
            near = difflib.get_close_matches(name, self._items, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise KeyError(f"unknown {self.kind} '{name}'{hint} (registered: {', '.join(sorted(self._items))})")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
