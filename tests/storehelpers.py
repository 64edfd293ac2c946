"""
Helpers for tests of the embedded store.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from twisted.internet import defer


class ImmediateThread:
    """
    Stands for the store's writer thread: runs what it is given at once,
    in the caller's thread, so that a L{task.Clock} decides when writes
    happen.
    """

    def __init__(self, reactor=None) -> None:
        self.running = False

    def start(self) -> None:
        self.running = True

    def run(self, f, *args) -> defer.Deferred:
        return defer.maybeDeferred(f, *args)

    def stop(self) -> None:
        self.running = False


def storedRows(path: Path) -> list[tuple]:
    """
    The rows of the store file at C{path}, as C{(user, status, lastSeen)},
    sorted, read as another process would.
    """
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
        return sorted(reader.execute("SELECT user, status, last_seen FROM last_seen"))


def transactions(path: Path) -> int:
    """
    How many write transactions the SQLite file at C{path} has seen: its
    header's file change counter (offset 24), which SQLite increments
    with each.
    """
    with open(path, "rb") as f:
        f.seek(24)
        return int.from_bytes(f.read(4), "big")
