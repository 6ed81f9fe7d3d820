"""Bounded-memory shuffling of a stream of encoded rows, and reading ahead in a background thread.

`ShuffleBuffer` takes encoded row blocks (numeric, categorical, labels arrays) and hands out
shuffled mini-batches while holding at most about `capacity` rows plus one block; `in_background`
runs an iterator (reading and encoding) in a daemon thread a few items ahead of its consumer (the
training step), without changing the order of the items.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # numeric, categorical, labels of the same rows


def take_rows(arrays: Arrays, index: np.ndarray | slice) -> Arrays:
    """The rows `index` picks (a mask, positions or a slice) of each of the three arrays."""
    return tuple(array[index] for array in arrays)  # type: ignore[return-value]


def _concat(parts: list[Arrays]) -> Arrays:
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))  # type: ignore[return-value]


class ShuffleBuffer:
    """Rows in, shuffled mini-batches out, holding at most about `capacity` + one block of rows.

    When `capacity` rows are in, they are shuffled; a whole number of batches, about half of
    them, leave, and the rest stay to mix with the rows that come next (so a row's stay is
    random, and rows of different blocks meet). `drain` shuffles and empties what is left; only
    the very last batch may be short.
    """

    def __init__(self, capacity: int, batch_size: int, rng: np.random.Generator) -> None:
        self.capacity = max(capacity, 2 * batch_size)
        self.batch_size = batch_size
        self.rng = rng
        self.parts: list[Arrays] = []
        self.rows = 0

    def add(self, arrays: Arrays) -> Iterator[Arrays]:
        if len(arrays[0]):
            self.parts.append(arrays)
            self.rows += len(arrays[0])
        if self.rows < self.capacity:
            return
        merged, order = _concat(self.parts), self.rng.permutation(self.rows)
        leave = max(self.rows // 2 // self.batch_size, 1) * self.batch_size
        # Two gathers into fresh arrays: the rows leaving now, and those that stay (so the batches
        # handed out, views of `leaving`, never keep the staying rows' memory alive, nor it theirs).
        leaving, kept = take_rows(merged, order[:leave]), take_rows(merged, order[leave:])
        self.parts, self.rows = [kept], self.rows - leave
        for start in range(0, leave, self.batch_size):
            yield take_rows(leaving, slice(start, start + self.batch_size))

    def drain(self) -> Iterator[Arrays]:
        if not self.rows:
            return
        shuffled = take_rows(_concat(self.parts), self.rng.permutation(self.rows))
        self.parts, self.rows = [], 0
        for start in range(0, len(shuffled[0]), self.batch_size):
            yield take_rows(shuffled, slice(start, start + self.batch_size))


class _Stop(Exception):
    pass


def in_background(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced by a daemon thread at most `depth` ahead; an error there is raised here,
    and leaving the loop early stops the thread."""
    channel: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def work() -> None:
        try:
            for item in items:
                put(("item", item))
            put(("done", done))
        except _Stop:
            pass
        except BaseException as error:  # handed to the consumer, which raises it
            try:
                put(("error", error))
            except _Stop:
                pass

    worker = threading.Thread(target=work, name="mmoe-streaming-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = channel.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


__all__ = ["Arrays", "ShuffleBuffer", "in_background", "take_rows"]
