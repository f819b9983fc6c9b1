"""Short-lived shared state: replay guard now, consent sessions and rate limits later.

``MemoryState`` serves one process (the embedded default); ``RedisState`` is shared by every
worker process and every host of a deployment. Both expire entries by themselves.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

import redis


class StateError(RuntimeError):
    """The state store cannot be reached; callers fail closed."""


class StateStore(Protocol):
    def add_once(self, key: str, ttl: float) -> bool:
        """Store *key* for *ttl* seconds; True only for the first caller while it lives."""
        ...

    def count(self, key: str, window: float) -> int:
        """Add one to a counter that starts afresh every *window* seconds; return the new value."""
        ...

    def discard(self, key: str) -> None:
        """Forget *key* (no error when it is not there)."""
        ...

    def ping(self) -> bool: ...


class MemoryState:
    def __init__(self, clock: object = time.monotonic) -> None:
        self._entries: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._ops = 0
        self._counters: dict[str, tuple[float, int]] = {}

    def add_once(self, key: str, ttl: float) -> bool:
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            self._ops += 1
            if self._ops % 1024 == 0:
                for k in [k for k, until in self._entries.items() if until <= now]:
                    del self._entries[k]
            until = self._entries.get(key)
            if until is not None and until > now:
                return False
            self._entries[key] = now + ttl
            return True

    def count(self, key: str, window: float) -> int:
        now = self._clock()  # type: ignore[operator]
        with self._lock:
            until, value = self._counters.get(key, (0.0, 0))
            if until <= now:
                until, value = now + window, 0
            self._counters[key] = (until, value + 1)
            if len(self._counters) > 100_000:
                self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
            return value + 1

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def ping(self) -> bool:
        return True


class RedisState:
    def __init__(self, url: str, prefix: str = "citycode:") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix

    def add_once(self, key: str, ttl: float) -> bool:
        try:
            return bool(self._redis.set(self._prefix + key, b"1", nx=True, px=max(1, math.ceil(ttl * 1000))))
        except redis.RedisError as exc:
            raise StateError(f"state store unreachable: {exc.__class__.__name__}") from None

    def count(self, key: str, window: float) -> int:
        name = self._prefix + key
        try:
            pipe = self._redis.pipeline()
            pipe.incr(name)
            pipe.pexpire(name, max(1, math.ceil(window * 1000)), nx=True)
            value, _ = pipe.execute()
            return int(value)
        except redis.RedisError as exc:
            raise StateError(f"state store unreachable: {exc.__class__.__name__}") from None

    def discard(self, key: str) -> None:
        try:
            self._redis.delete(self._prefix + key)
        except redis.RedisError as exc:
            raise StateError(f"state store unreachable: {exc.__class__.__name__}") from None

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False


def make_state(redis_url: str | None, prefix: str = "citycode:") -> StateStore:
    return RedisState(redis_url, prefix) if redis_url else MemoryState()


class StateReplayGuard:
    """The SDK's replay-guard interface over a state store, shared by all workers."""

    def __init__(self, state: StateStore, clock: object = time.time) -> None:
        self._state = state
        self._clock = clock

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        ttl = keep_until - self._clock()  # type: ignore[operator]
        if ttl <= 0:
            ttl = 1
        return self._state.add_once(f"replay:{scope}:{code_id.hex()}", ttl)
