"""Keeping a gate's trust list and status lists fresh when it has a network.

A gate calls :meth:`GateSync.refresh` from time to time (say every minute). It fetches the trust list
when it is due (half its validity gone, or expired) and every status list whose ``ttl`` has passed,
verifies each before use, and keeps what it had when the network or the server fails: a gate never
trusts less verified data because it went offline, and the verifier's ``status_stale`` /
``trust_list_expired`` answers tell when it has been offline too long.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from sdk.statuslist import STATUS_KINDS, StatusListError
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


class GateSync:
    """Fetches ``<base>/api/v1/trust-list`` and ``<base>/api/v1/status/<issuer>`` for a Verifier."""

    def __init__(
        self, verifier: Verifier, base_url: str, anchor: ec.EllipticCurvePublicKey, *, fetch: Fetch = http_get,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier, self.base_url, self.anchor = verifier, base_url.rstrip("/"), anchor
        self.fetch, self.clock = fetch, clock

    def _trust_due(self, now: float) -> bool:
        trust = self.verifier.trust
        return now >= trust.issued_at + (trust.expires_at - trust.issued_at) / 2

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
        issuers = sorted({k.issuer for k in self.verifier.trust.keys.values() if k.kinds & STATUS_KINDS})
        due = set(self.verifier.status.due_for_refresh(now))
        for issuer in issuers:
            if not force and self.verifier.status.get(issuer) is not None and issuer not in due:
                continue
            try:
                token = self.fetch(f"{self.base_url}/api/v1/status/{issuer}")
                self.verifier.status.load(token, self.verifier.trust, at=now)
                report.status_lists[issuer] = "updated"
            except (OSError, ValueError, StatusListError, urllib.error.URLError) as exc:
                report.status_lists[issuer] = "kept"
                report.errors.append(f"status list {issuer}: {exc}")
        return report
