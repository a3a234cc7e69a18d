"""A small least-recently-used cache (the engine keeps its prompt encodings in one)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class LruCache:
    """A small least-recently-used cache: ``get(key, make)`` returns the kept value or makes, keeps and returns it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = make()
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()
