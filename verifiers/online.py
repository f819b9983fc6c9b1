"""Online verification: the SDK verifier over the service's own trust list and a shared replay guard.

Every worker process verifies alike: the trust list is rebuilt from its key source when that
changes (after a rotation), and single-use scenes share one replay guard across workers
through the state store (Redis in production).

The verifier sees public keys only: a ``KeySource`` (``issuers.trustlist.KeyringKeys`` over the
service's keyring, or ``FixedKeys`` over a trust list fetched and checked elsewhere) hands it a trust
list, never the keyring that holds the private keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sdk import Result, TrustList, Verifier
from sdk.federation import Federation
from sdk.replay import ReplayGuard
from sdk.statuslist import StatusCache
from sdk.verifier import Veto
from verifiers.scenes import get_scene

log = logging.getLogger("citycode.verify")

#: Yields the current status list token of every issuer (read from the service's database).
StatusSource = Callable[[], Iterable[str]]


class KeySource(Protocol):
    """Where the public keys come from: a trust list for a moment, and a version that changes with the keys."""

    def version(self) -> object:
        """Changes whenever the keys may have (a rotation, a new issuer), in any process."""
        ...

    def trust_list(self, now: float) -> TrustList:
        """The keys trusted at *now*, as a trust list valid from *now*."""
        ...


class FixedKeys:
    """A key source that never changes: one trust list (for instance one fetched and verified by a gate)."""

    def __init__(self, trust: TrustList) -> None:
        self._trust = trust

    def version(self) -> object:
        return self._trust.seq

    def trust_list(self, now: float) -> TrustList:
        return self._trust


class OnlineVerifier:
    def __init__(
        self,
        keys: KeySource,
        replay_guard: ReplayGuard,
        *,
        leeway: int,
        status_source: StatusSource | None = None,
        status_refresh: float = 5.0,
        clock: Callable[[], float] = time.time,
        federation: Federation | None = None,
        refresh_federation: Callable[[], object] | None = None,
    ) -> None:
        """*federation*: the federated cities' lists, so that a visitor's code verifies here too (docs/federation.md);
        *refresh_federation* is called before each verification to keep them fresh (it throttles itself)."""
        self._keys = keys
        self._refresh_federation = refresh_federation
        self._clock = clock
        self._lock = threading.Lock()
        self._keys_version: object = None
        self._refresh_after = 0.0
        self._status_source = status_source
        self._status_refresh = status_refresh
        self._status_after = 0.0
        self._verifier = Verifier(
            keys.trust_list(clock()),
            leeway=leeway,
            replay_guard=replay_guard,
            clock=clock,
            federation=federation,
        )

    def refresh_status(self) -> None:
        """Read the status lists again at the next verification (a status just changed in this process)."""
        self._status_after = 0.0

    def trust_list(self) -> TrustList:
        """The trust list the service verifies with now: rebuilt only when the keyring changes or it ages, so a
        view that needs its own verifier (another replay guard) takes this one instead of signing a new list."""
        return self._current().trust

    def _current(self) -> Verifier:
        if self._refresh_federation is not None:
            try:
                self._refresh_federation()
            except Exception as exc:  # fail closed: visitors' codes then verify with what is held, or not at all
                log.error("federation lists unavailable: %s", exc.__class__.__name__)
        now = self._clock()
        version = self._keys.version()
        if version != self._keys_version or now >= self._refresh_after:
            with self._lock:
                trust = self._keys.trust_list(now)
                self._verifier.replace_trust_list(trust)
                self._keys_version = version
                self._refresh_after = now + min(3600, max(1.0, (trust.expires_at - now) / 2))
                self._status_after = 0.0
        if self._status_source is not None and now >= self._status_after:
            with self._lock:
                cache = StatusCache()
                try:
                    tokens = list(self._status_source())
                except Exception as exc:  # fail closed: certificates then get status_unknown
                    log.error("status lists unavailable: %s", exc.__class__.__name__)
                    tokens = []
                for token in tokens:
                    try:
                        cache.load(token, self._verifier.trust, at=now)
                    except Exception as exc:  # one bad list spoils only its issuer's certificates
                        log.error("a status list was refused: %s", exc)
                self._verifier.status = cache
                self._status_after = now + self._status_refresh
        return self._verifier

    def verify(
        self, code: Any, scene_name: str | None, at: float | None = None, before_use: Veto | None = None,
        id_checked: bool = False,
    ) -> Result:
        """Raises verifiers.scenes.UnknownSceneError for an unknown scene name. *id_checked*: the clerk checked
        the identity card (a scene may need it before it takes a printed card)."""
        scene = get_scene(scene_name) if scene_name is not None else None
        return self._current().verify(code, scene, at=at, before_use=before_use, id_checked=id_checked)
