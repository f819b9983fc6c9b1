"""Replay guards: remember a code id until the code can no longer be accepted anyway."""

from __future__ import annotations

import heapq
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol


class ReplayGuard(Protocol):
    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        """Record the code id; True when it had not been seen in *scope* before."""
        ...


class MemoryReplayGuard:
    """An in-process guard for one gate or one process. Thread-safe; forgets expired ids."""

    def __init__(self, clock: object = time.time) -> None:
        self._seen: dict[tuple[str, bytes], float] = {}
        self._expiry: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self._clock = clock

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        key = (scope, code_id)
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                until, s, c = heapq.heappop(self._expiry)
                if self._seen.get((s, c)) == until:
                    del self._seen[(s, c)]
            if key in self._seen:
                return False
            self._seen[key] = keep_until
            heapq.heappush(self._expiry, (keep_until, scope, code_id))
            return True

    def __len__(self) -> int:
        return len(self._seen)


class SqliteReplayGuard:
    """A guard that survives a gate restart: one SQLite file, one row per code id."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replay (scope TEXT NOT NULL, code_id BLOB NOT NULL,"
            " keep_until REAL NOT NULL, PRIMARY KEY (scope, code_id))"
        )
        self._inserts = 0

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO replay (scope, code_id, keep_until) VALUES (?, ?, ?)",
                (scope, code_id, keep_until),
            )
            self._inserts += 1
            if self._inserts % 1000 == 0:
                self._db.execute("DELETE FROM replay WHERE keep_until < ?", (time.time(),))
            return cur.rowcount == 1

    def close(self) -> None:
        self._db.close()
