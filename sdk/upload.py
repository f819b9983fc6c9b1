"""Uploading a gate's records to the service, exactly once (docs/transit.md, section 3).

The gate sends its pending records in batches to ``POST <base>/api/v1/gate/records`` with its device
key. The service stores each record whose id it has not stored yet, and answers with the ids it now
holds (``stored`` and ``duplicates``) and the ids it refuses for good (``rejected``, with a reason). Only
then does the gate mark those records; a batch whose answer never arrives is simply sent again, and the
service's unique record id makes the second delivery a duplicate, not a second record.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sdk.gate import GateStore

MAX_ANSWER = 4 * 1024 * 1024
#: POST a JSON body with a bearer key and return (status, decoded JSON answer).
Post = Callable[[str, dict[str, Any], str], tuple[int, Any]]


class UploadError(RuntimeError):
    """The service could not be reached or answered something unusable; the records stay pending."""


def http_post_json(url: str, body: dict[str, Any], device_key: str, timeout: float = 15) -> tuple[int, Any]:
    if not url.startswith(("https://", "http://")):
        raise UploadError("only http(s) URLs are used")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=json.dumps(body, separators=(",", ":")).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {device_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, data = response.status, response.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read(MAX_ANSWER)
    except (OSError, urllib.error.URLError) as exc:
        raise UploadError(f"service unreachable: {exc}") from None
    try:
        return status, json.loads(data)
    except ValueError:
        raise UploadError(f"service answered {status} with something that is not JSON") from None


@dataclass
class UploadReport:
    sent: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "stored": self.stored, "duplicates": self.duplicates,
                "rejected": self.rejected, "errors": self.errors}


class Uploader:
    def __init__(
        self, store: GateStore, base_url: str, device_key: str, *, batch_size: int = 100,
        post: Post = http_post_json, path: str = "/api/v1/gate/records",
    ) -> None:
        """*path*: where the records go; a service point's (sdk/points.py) is ``/api/v1/points/records``."""
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000")
        self.store, self.url, self.device_key = store, base_url.rstrip("/") + path, device_key
        self.batch_size, self.post = batch_size, post

    def upload_batch(self) -> UploadReport:
        """Send one batch of pending records; raise :class:`UploadError` when it could not be delivered."""
        report = UploadReport()
        records = self.store.pending(self.batch_size)
        if not records:
            return report
        gates = {str(r.get("gate_id") or r.get("point_id")) for r in records}
        status, answer = self.post(self.url, {"records": records}, self.device_key)
        if status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise UploadError(f"service answered {status} ({error or 'no reason'}) for gates {sorted(gates)}")
        sent = {r["record_id"] for r in records}
        stored, duplicates = _ids(answer.get("stored")), _ids(answer.get("duplicates"))
        rejected = answer.get("rejected") or []
        rejected_ids = _ids([r.get("record_id") for r in rejected if isinstance(r, dict)])
        if not (stored | duplicates | rejected_ids) <= sent:
            raise UploadError("the service acknowledged records that were not sent")
        self.store.mark(sorted(stored | duplicates), "sent")
        for item in rejected:
            if isinstance(item, dict) and item.get("record_id") in sent:
                self.store.mark([item["record_id"]], "rejected", str(item.get("error", ""))[:200])
        report.sent, report.stored, report.duplicates = len(records), len(stored), len(duplicates)
        report.rejected = len(rejected_ids)
        return report

    def upload(self, max_batches: int = 1000) -> UploadReport:
        """Send batches until nothing is pending or the service cannot be reached; never raises."""
        total = UploadReport()
        for _ in range(max_batches):
            try:
                report = self.upload_batch()
            except UploadError as exc:
                total.errors.append(str(exc))
                break
            if report.sent == 0:
                break
            total.sent += report.sent
            total.stored += report.stored
            total.duplicates += report.duplicates
            total.rejected += report.rejected
            if report.stored + report.duplicates + report.rejected == 0:
                total.errors.append("the service acknowledged nothing of a batch")
                break
        return total


def _ids(value: Any) -> set[str]:
    if not isinstance(value, list):
        return set()
    return {v for v in value if isinstance(v, str)}
