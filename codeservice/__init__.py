"""citycode service: wires issuers, verifiers and the SDK into a Flask app and a CLI."""

from codeservice.app import create_app

__all__ = ["create_app"]
