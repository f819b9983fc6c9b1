"""citycode offline verifier SDK.

Installs alone on a gate (see sdk/pyproject.toml) and imports nothing else of citycode::

    from sdk import TrustList, Verifier, Scene, load_anchor
    trust = TrustList.load_file("trustlist.jwt", load_anchor(Path("anchor.pem")))
    verifier = Verifier(trust, leeway=30)
    result = verifier.verify(scanned_text, Scene("bus", frozenset({"id"}), single_use=True))
    if result.accepted: ...
"""

from sdk.claims import KINDS, subject_from_text, subject_to_text
from sdk.reasons import Reason
from sdk.replay import MemoryReplayGuard, ReplayGuard, SqliteReplayGuard
from sdk.result import Result
from sdk.scene import Scene, SceneError
from sdk.trustlist import TrustList, TrustListError, load_anchor
from sdk.verifier import PREFIX, Verifier

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "PREFIX",
    "MemoryReplayGuard",
    "Reason",
    "ReplayGuard",
    "Result",
    "Scene",
    "SceneError",
    "SqliteReplayGuard",
    "TrustList",
    "TrustListError",
    "Verifier",
    "load_anchor",
    "subject_from_text",
    "subject_to_text",
]
