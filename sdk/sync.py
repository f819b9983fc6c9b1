"""Keeping a gate's trust list and status lists fresh when it has a network.

A gate calls :meth:`GateSync.refresh` from time to time (say every minute). It fetches the trust list
when it is due (half its validity gone, or expired) and every status list whose ``ttl`` has passed,
verifies each before use, and keeps what it had when the network or the server fails: a gate never
trusts less verified data because it went offline, and the verifier's ``status_stale`` /
``trust_list_expired`` answers tell when it has been offline too long.

A gate whose verifier holds a :class:`sdk.federation.Federation` also fetches its city's federation
statement (``<base>/api/v1/federation``, verified with the same pinned anchor) and, for every city the
statement names, that city's trust list (verified with the anchor the statement vouches for, never with a
key of the other city's choosing) and status lists, from the city's own ``url``, with the same rules: due
when half the list's validity is gone or a status list's ``ttl`` has passed, and kept when a fetch fails.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from sdk.federation import Federation, FederationError, FederationStatement
from sdk.statuslist import STATUS_KINDS, StatusCache, StatusListError
from sdk.trustlist import TrustList, TrustListError
from sdk.verifier import Verifier

MAX_DOWNLOAD = 32 * 1024 * 1024
Fetch = Callable[[str], bytes]


def http_get(url: str, timeout: float = 10) -> bytes:
    """GET *url* (https, or http for a local network) and return at most MAX_DOWNLOAD bytes."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("only http(s) URLs are fetched")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        data: bytes = response.read(MAX_DOWNLOAD + 1)
    if len(data) > MAX_DOWNLOAD:
        raise ValueError("download too large")
    return data


@dataclass
class SyncReport:
    trust_list: str = "kept"
    status_lists: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: With a federation: the statement ("updated" or "kept") and each federated city's lists.
    federation: str | None = None
    cities: dict[str, dict[str, object]] = field(default_factory=dict)


class GateSync:
    """Fetches ``<base>/api/v1/trust-list`` and ``<base>/api/v1/status/<issuer>`` for a Verifier."""

    def __init__(
        self, verifier: Verifier, base_url: str, anchor: ec.EllipticCurvePublicKey, *, fetch: Fetch = http_get,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier, self.base_url, self.anchor = verifier, base_url.rstrip("/"), anchor
        self.fetch, self.clock = fetch, clock

    def _trust_due(self, now: float) -> bool:
        return _trust_due(self.verifier.trust, now)

    def refresh(self, *, force: bool = False) -> SyncReport:
        """Fetch what is due; never raises for network or content problems (they are in the report)."""
        now = self.clock()
        report = SyncReport()
        if force or self._trust_due(now):
            try:
                fresh = TrustList.load(self.fetch(f"{self.base_url}/api/v1/trust-list"), self.anchor, at=now)
                if fresh.issued_at >= self.verifier.trust.issued_at:
                    self.verifier.replace_trust_list(fresh)
                    report.trust_list = "updated"
            except (OSError, ValueError, TrustListError, urllib.error.URLError) as exc:
                report.errors.append(f"trust list: {exc}")
        _status_lists(self.fetch, self.base_url, self.verifier.trust, self.verifier.status, now, force,
                      report.status_lists, report.errors, "")
        if self.verifier.federation is not None:
            self._federation(now, force, report)
        return report

    def _federation(self, now: float, force: bool, report: SyncReport) -> None:
        """The statement, then each federated city's trust list and status lists."""
        federation = self.verifier.federation
        assert federation is not None
        held = federation.statement
        report.federation = "kept"
        if force or held is None or now >= held.issued_at + (held.expires_at - held.issued_at) / 2:
            try:
                fresh = FederationStatement.load(self.fetch(f"{self.base_url}/api/v1/federation"), self.anchor,
                                                 at=now, city=held.city if held is not None else None)
                if held is None or fresh.issued_at >= held.issued_at:
                    federation.replace_statement(fresh)
                    report.federation = "updated"
            except (OSError, ValueError, FederationError, urllib.error.URLError) as exc:
                report.errors.append(f"federation statement: {exc}")
        sync_cities(federation, self.fetch, now, force, report)


def _status_lists(fetch: Fetch, base: str, trust: TrustList, cache: StatusCache, now: float, force: bool,
                  out: dict[str, str], errors: list[str], where: str) -> None:
    """Fetch the status lists of *trust*'s issuers that are due from *base* into *cache*."""
    issuers = sorted({k.issuer for k in trust.keys.values() if k.kinds & STATUS_KINDS})
    due = set(cache.due_for_refresh(now))
    for issuer in issuers:
        if not force and cache.get(issuer) is not None and issuer not in due:
            continue
        try:
            token = fetch(f"{base}/api/v1/status/{issuer}")
            cache.load(token, trust, at=now)
            out[issuer] = "updated"
        except (OSError, ValueError, StatusListError, urllib.error.URLError) as exc:
            out[issuer] = "kept"
            errors.append(f"{where}status list {issuer}: {exc}")


def _trust_due(trust: TrustList, now: float) -> bool:
    return now >= trust.issued_at + (trust.expires_at - trust.issued_at) / 2


def sync_cities(federation: Federation, fetch: Fetch, now: float, force: bool, report: SyncReport) -> None:
    """For every city *federation*'s statement names: its trust list from its own URL, verified with the anchor
    the statement vouches for, when due; then its status lists when due. What fails is kept (and reported)."""
    statement = federation.statement
    if statement is None:
        return
    for city, entry in sorted(statement.cities.items()):
        done: dict[str, object] = {"trust_list": "kept"}
        report.cities[city] = done
        trust = federation.trust_list(city)
        if force or trust is None or _trust_due(trust, now):
            try:
                federation.load_trust_list(city, fetch(f"{entry.url}/api/v1/trust-list"), at=now)
                done["trust_list"] = "updated"
            except (OSError, ValueError, FederationError, urllib.error.URLError) as exc:
                report.errors.append(f"{city}: trust list: {exc}")
        trust = federation.trust_list(city)
        if trust is not None:
            lists: dict[str, str] = {}
            _status_lists(fetch, entry.url, trust, federation.status(city), now, force, lists, report.errors,
                          f"{city}: ")
            done["status_lists"] = lists
