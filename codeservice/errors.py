"""What a domain's rules raise when they refuse: the message says why, for the person who asked.

The CLI and the views turn these into exit codes and ``{error, message}`` answers without knowing each
domain's own subclasses.
"""

from __future__ import annotations


class Refused(ValueError):
    """A request the rules cannot carry out."""


class NotFound(Refused):
    """A request that names something that does not exist."""
