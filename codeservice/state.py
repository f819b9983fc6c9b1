"""Short-lived shared state: replay guards, anti-passback, site capacity, rate limits, service-point quotas.

``MemoryState`` serves one process (the embedded default); ``RedisState`` is shared by every worker process and
every host of a deployment, on one Redis (``redis://``, ``rediss://``, ``unix://``) or on a Redis Cluster
(``redis+cluster://host:port[,host:port...]``, redis-py's :class:`redis.cluster.RedisCluster`). Both expire entries
by themselves.

Keys and slots (docs/scaling.md, "Redis: keys and slots"): every operation here is one command or one Lua script,
and every script's keys must hash to one cluster slot, which :meth:`RedisState._script` checks before it sends
(``StateError``, never a ``CROSSSLOT`` surprise in production). Callers name their keys ``family:{tag}:rest``: the
hash tag ``{tag}`` names the one thing (a code, a rider, a site's day, an API client, a resident) whose keys may be
used together, so that they share a slot, and nothing coarser (a tag per operator would put a whole metro's taps on
one master). Any failure of the store, an unreachable node or a slot that moves and cannot be followed
mid-operation, is a ``StateError``: the callers refuse (fail closed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster, key_slot
from redis.exceptions import RedisClusterException
from redis.retry import Retry

#: The scheme that selects a Redis Cluster: ``redis+cluster://host:port[,host:port...]``.
CLUSTER_SCHEME = "redis+cluster://"
#: Errors of the store that make an operation fail closed.
_STORE_ERRORS = (redis.RedisError, RedisClusterException)
#: ``INCR`` and, on the window's first count, its expiry: one script, so that a counter never lives without one.
_COUNT = """
local value = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
"""


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


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The seed nodes of a ``redis+cluster://host:port[,host:port...]`` URL; ``ValueError`` naming what is wrong.

    Only seeds: the client learns every master and its slots from the first seed that answers."""
    if not url.startswith(CLUSTER_SCHEME):
        raise ValueError(f"a Redis Cluster URL starts with {CLUSTER_SCHEME}")
    rest = url[len(CLUSTER_SCHEME):]
    if not rest or any(c in rest for c in "/?#@"):
        raise ValueError("a Redis Cluster URL is redis+cluster://host:port[,host:port...] with nothing after the "
                         "nodes (no database, path, query or credentials)")
    nodes: list[tuple[str, int]] = []
    for part in rest.split(","):
        try:
            split = urlsplit("//" + part)
            host, port = split.hostname, split.port
        except ValueError:
            host, port = None, None
        if not host or port is None or port <= 0 or not part.rsplit(":", 1)[-1].isdigit():
            raise ValueError(f"each node is host:port with a port from 1 to 65535, got {part!r}")
        nodes.append((host, port))
    return nodes


def same_slot(keys: Sequence[str]) -> bool:
    """True when all *keys* hash to one Redis Cluster slot (CRC16 of the hash tag, or of the whole key)."""
    return len({key_slot(k.encode()) for k in keys}) <= 1


class RedisState:
    """The state on one Redis or on a Redis Cluster (by the URL's scheme); every failure is a ``StateError``."""

    def __init__(self, url: str, prefix: str = "citycode:") -> None:
        self._prefix = prefix
        self.cluster = url.startswith(CLUSTER_SCHEME)
        self._client: Any = None
        if self.cluster:
            self._nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]
        else:
            self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _redis(self) -> Any:
        """The client; a cluster's is made on first use (it asks a seed for the slots: it may be unreachable)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    # A redirection (MOVED, ASK) is followed a few times, then the operation fails closed.
                    self._client = RedisCluster(startup_nodes=self._nodes, socket_timeout=2, socket_connect_timeout=2,
                                                require_full_coverage=True,
                                                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 3))
        return self._client

    def _fail(self, exc: BaseException) -> StateError:
        return StateError(f"state store unreachable: {exc.__class__.__name__}")

    def _script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script on *keys* (already prefixed), which must share one slot: a cluster runs a script on one
        node. Checked on one Redis too, so that a script across slots fails where it is written, not on the day a
        deployment moves to a cluster."""
        if not same_slot(keys):
            raise StateError("keys of one state operation must share a hash slot: give them one {hash tag}")
        try:
            script = self._scripts.get(source)
            if script is None:
                script = self._scripts[source] = self._redis().register_script(source)
            return script(keys=list(keys), args=list(args))
        except _STORE_ERRORS as exc:
            raise self._fail(exc) from None

    def key(self, key: str) -> str:
        """The Redis key of the state's *key* (the deployment's prefix before it)."""
        return self._prefix + key

    def add_once(self, key: str, ttl: float) -> bool:
        try:
            return bool(self._redis().set(self.key(key), b"1", nx=True, px=max(1, math.ceil(ttl * 1000))))
        except _STORE_ERRORS as exc:
            raise self._fail(exc) from None

    def count(self, key: str, window: float) -> int:
        return int(self._script(_COUNT, [self.key(key)], [max(1, math.ceil(window * 1000))]))

    def discard(self, key: str) -> None:
        try:
            self._redis().delete(self.key(key))
        except _STORE_ERRORS as exc:
            raise self._fail(exc) from None

    def ping(self) -> bool:
        try:
            client = self._redis()
            return bool(client.ping(target_nodes=RedisCluster.ALL_NODES) if self.cluster else client.ping())
        except _STORE_ERRORS:
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
        return self._state.add_once(f"replay:{{{code_id.hex()}}}:{scope}", ttl)  # tag: the code (a single key)
