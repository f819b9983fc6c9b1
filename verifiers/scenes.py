"""The city's scenes as policies over the SDK: which kinds each gate takes, and how often."""

from __future__ import annotations

from sdk.scene import Scene

SCENES: dict[str, Scene] = {
    scene.name: scene
    for scene in (
        Scene("bus", frozenset({"id", "ride", "card"}), single_use=True,
              description="bus reader: one ride per code; a ride code works with the phone offline; a printed card "
              "once a minute"),
        Scene("metro-gate", frozenset({"id", "ride", "card"}), single_use=True,
              description="metro gate (tap in, tap out); a ride code works with the phone offline; a printed card "
              "once a minute"),
        Scene(
            "scenic-gate",
            frozenset({"id", "ride", "cert"}),
            single_use=True,
            cert_rules={"LNYD": frozenset({"age_over_60"})},
            description="scenic-site turnstile: a ticket paid from the transit account (ride or identity code), "
            "or free entry with an elderly card showing 60 or older",
        ),
        Scene(
            "service-window",
            frozenset({"id"}),
            single_use=False,
            description="service-hall window: the clerk may re-scan while the code lives",
        ),
        Scene(
            "service-window-card",
            frozenset({"id", "card"}),
            single_use=False,
            card_needs_id_check=True,
            description="service-hall window for a resident without a smartphone: a printed card only once the "
            "clerk has checked the identity card",
        ),
        Scene("hospital-kiosk", frozenset({"id"}), single_use=False, description="hospital self-service kiosk"),
        Scene(
            "scenic-elderly",
            frozenset({"cert"}),
            single_use=True,
            cert_rules={"LNYD": frozenset({"age_over_60"})},
            description="scenic-site turnstile, free entry for an elderly card showing 60 or older",
        ),
        Scene(
            "inspection",
            frozenset({"cert"}),
            single_use=False,
            max_status_age=3600,
            description="an inspector or shop checks a shown certificate (查证)",
        ),
    )
}


class UnknownSceneError(KeyError):
    """No scene of that name."""


def get_scene(name: str) -> Scene:
    try:
        return SCENES[name]
    except KeyError:
        raise UnknownSceneError(name) from None
