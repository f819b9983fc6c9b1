"""A scene is the policy of one kind of gate: which kinds of code it takes and how often."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdk.claims import CARD_TYPES, KIND_IDS


class SceneError(ValueError):
    """A scene definition that cannot be used."""


@dataclass(frozen=True, slots=True)
class Scene:
    """What a gate of this scene accepts.

    ``single_use``: a code is accepted once within its life (bus, metro); otherwise it may be
    scanned again while valid (a service window that re-scans). ``replay_scope`` names the
    group of gates that share one replay guard; by default the scene itself.
    """

    name: str
    kinds: frozenset[str]
    single_use: bool
    replay_scope: str = ""
    description: str = ""
    #: For ``cert`` codes: the certificate types taken here, each with the fields that must be
    #: disclosed (a boolean field must be true), e.g. ``{"LNYD": frozenset({"age_over_60"})}``.
    #: Empty: any certificate type, nothing required.
    cert_rules: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: How old (seconds since the issuer signed it) a status list may be before the gate says
    #: ``status_stale`` instead of trusting it.
    max_status_age: int = 24 * 3600
    #: For ``ride`` codes: the card types taken here (``card_not_accepted`` otherwise); empty: all.
    card_types: frozenset[str] = frozenset()
    #: For printed cards (kind ``card``, taken where ``kinds`` names it): taken only when the verifying party
    #: states that the clerk checked the resident's identity card (a service window that pulls data).
    card_needs_id_check: bool = False
    #: For printed cards at a single-use scene: a card, which is the same code every day, counts once in this
    #: many seconds (a second tap within them is ``replayed``), since it cannot be spent once for good.
    card_window: int = 60

    def __post_init__(self) -> None:
        if not self.name:
            raise SceneError("a scene needs a name")
        unknown = set(self.kinds) - set(KIND_IDS)
        if unknown or not self.kinds:
            raise SceneError(f"scene {self.name!r}: unknown or no kinds {sorted(unknown)}")
        if not self.replay_scope:
            object.__setattr__(self, "replay_scope", self.name)
        if self.max_status_age <= 0:
            raise SceneError(f"scene {self.name!r}: max_status_age must be positive")
        object.__setattr__(self, "cert_rules", {k: frozenset(v) for k, v in self.cert_rules.items()})
        unknown_cards = set(self.card_types) - set(CARD_TYPES.values())
        if unknown_cards:
            raise SceneError(f"scene {self.name!r}: unknown card types {sorted(unknown_cards)}")
        object.__setattr__(self, "card_types", frozenset(self.card_types))
        if type(self.card_window) is not int or not 1 <= self.card_window <= 86400:
            raise SceneError(f"scene {self.name!r}: card_window must be 1 to 86400 seconds")
        if self.card_needs_id_check and "card" not in self.kinds:
            raise SceneError(f"scene {self.name!r}: card_needs_id_check without taking cards")

    def accepts(self, kind: str) -> bool:
        return kind in self.kinds

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scene:
        """A scene from a gate's configuration (JSON object)."""
        try:
            kinds = data["kinds"]
            if isinstance(kinds, str) or not isinstance(kinds, Iterable):
                raise SceneError("kinds must be a list")
            return cls(
                name=str(data["name"]),
                kinds=frozenset(str(k) for k in kinds),
                single_use=bool(data.get("single_use", True)),
                replay_scope=str(data.get("replay_scope", "")),
                description=str(data.get("description", "")),
                cert_rules={str(t): frozenset(map(str, f)) for t, f in dict(data.get("cert_rules", {})).items()},
                max_status_age=int(data.get("max_status_age", 24 * 3600)),
                card_types=frozenset(str(c) for c in _names(data.get("card_types", []), "card_types")),
                card_needs_id_check=_flag(data.get("card_needs_id_check", False), "card_needs_id_check"),
                card_window=int(data.get("card_window", 60)),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: a JSON 1e400 read as infinity
            raise SceneError(f"scene definition is malformed: {exc}") from None
        except KeyError as exc:
            raise SceneError(f"scene definition lacks {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kinds": sorted(self.kinds),
            "single_use": self.single_use,
            "replay_scope": self.replay_scope,
            "description": self.description,
            "cert_rules": {t: sorted(f) for t, f in self.cert_rules.items()},
            "max_status_age": self.max_status_age,
            "card_types": sorted(self.card_types),
            "card_needs_id_check": self.card_needs_id_check,
            "card_window": self.card_window,
        }


def _names(value: Any, what: str) -> Iterable[Any]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise SceneError(f"{what} must be a list")
    return value


def _flag(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise SceneError(f"{what} must be true or false")
    return value
