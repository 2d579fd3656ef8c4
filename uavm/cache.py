"""Caches bounded by bytes: stores that share one budget, the least recently used entry of
any of them evicted first. What a server keeps (decoded windows, features, timelines,
explanations) is bounded by what it weighs, not by how many entries there are: one clip of
wide 4K frames weighs as much as hundreds of small ones.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict

import numpy as np


def nbytes(x, _depth: int = 0) -> int:
    """About how many bytes of memory ``x`` holds: arrays, bytes and strings, containers and
    dataclasses of them; an object may say itself (``x.memory_bytes()``)."""
    if _depth > 8 or x is None:
        return 0
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if isinstance(x, (bytes, bytearray, str)):
        return len(x)
    if hasattr(x, "memory_bytes"):
        return int(x.memory_bytes())
    if isinstance(x, dict):
        return 64 + sum(nbytes(k, _depth + 1) + nbytes(v, _depth + 1) for k, v in x.items())
    if isinstance(x, (list, tuple, set, frozenset)):
        return 56 + sum(nbytes(v, _depth + 1) for v in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return 64 + sum(nbytes(getattr(x, f.name), _depth + 1) for f in dataclasses.fields(x))
    return 32


class Budget:
    """Bytes shared by several ``Store``s. ``lock`` guards every store of the budget (hold it
    for dictionary operations only, never for work)."""

    def __init__(self, max_bytes: float):
        self.max_bytes = max_bytes if max_bytes == float("inf") else max(int(max_bytes), 1)
        self.lock = threading.RLock()
        self.used = 0
        self._order: OrderedDict = OrderedDict()  # (id(store), key) -> (store, size), oldest first

    def _add(self, store, key, size: int) -> None:
        self._remove(store, key)
        self._order[(id(store), key)] = (store, size)
        self.used += size
        while self.used > self.max_bytes and len(self._order) > 1:
            (_, old), (owner, _) = next(iter(self._order.items()))
            if owner is store and old == key:  # never the entry just added
                self._order.move_to_end((id(store), key))
                continue
            owner._drop(old)

    def _touch(self, store, key) -> None:
        if (id(store), key) in self._order:
            self._order.move_to_end((id(store), key))

    def _remove(self, store, key) -> None:
        item = self._order.pop((id(store), key), None)
        if item is not None:
            self.used -= item[1]


class Store(OrderedDict):
    """One cache of a budget: at most ``size`` entries, and its share of the budget's bytes.
    ``evict(value)`` is told when an entry leaves (to close files it holds)."""

    def __init__(self, size: int, evict=None, budget: Budget | None = None, weigh=nbytes):
        super().__init__()
        self.size, self.evict, self.weigh = size, evict, weigh
        self.budget = budget or Budget(float("inf"))

    def get_or(self, key, make):
        """-> (value, hit?): the kept value, or ``make()``'s, kept."""
        with self.budget.lock:
            if key in self:
                self.move_to_end(key)
                self.budget._touch(self, key)
                return self[key], True
        value = make()
        self.put(key, value)
        return value, False

    def put(self, key, value) -> None:
        size = self.weigh(value)
        with self.budget.lock:
            if key in self:
                old = super().pop(key)
                if old is not value and self.evict is not None:
                    self.evict(old)
            self[key] = value
            self.budget._add(self, key, size)
            while len(self) > self.size:
                self._drop(next(iter(self)))

    def _drop(self, key) -> None:
        value = super().pop(key, None)
        self.budget._remove(self, key)
        if value is not None and self.evict is not None:
            self.evict(value)
