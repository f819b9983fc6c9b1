"""The operator's shared guard for its online gates, over the service's state store (Redis in production).

Gates of one operator that can reach it share: the replay guard (the same ride code is refused at a
second gate), anti-passback (who is inside the metro; who entered a scenic site today) and a site's daily
count. A gate that cannot reach it goes on with its own store (sdk/gate.py); every method here raises
:class:`codeservice.state.StateError` (through the store) when the state store is unreachable.

Keys (docs/scaling.md, "Redis: keys and slots"): each is one key with a hash tag, so that a Redis Cluster spreads
them by what they are about and keeps one thing's keys in one slot: ``gate-replay:{code}:scope`` (a code),
``gate-inside:{account}:scope`` (a rider: all their passback entries, every operator and site, in one slot),
``gate-count:{operator:site:day:capacity}`` (a site's day).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class _State(Protocol):
    def add_once(self, key: str, ttl: float) -> bool: ...

    def count(self, key: str, window: float) -> int: ...

    def discard(self, key: str) -> None: ...


class StateSharedGuard:
    """:class:`sdk.gate.SharedGuard` over a state store."""

    def __init__(self, state: _State, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock

    def _ttl(self, keep_until: float) -> float:
        return max(1.0, keep_until - self._clock())

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        return self._state.add_once(f"gate-replay:{{{code_id.hex()}}}:{scope}", self._ttl(keep_until))

    def enter(self, scope: str, account: str, keep_until: float) -> bool:
        return self._state.add_once(f"gate-inside:{{{account}}}:{scope}", self._ttl(keep_until))

    def leave(self, scope: str, account: str) -> None:
        self._state.discard(f"gate-inside:{{{account}}}:{scope}")

    def take(self, scope: str, limit: int, keep_until: float) -> bool:
        return self._state.count(f"gate-count:{{{scope}}}", self._ttl(keep_until)) <= limit
