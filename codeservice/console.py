"""Pages: the clerk's console, and the resident's pending requests and access history."""

from __future__ import annotations

from flask import Blueprint

console = Blueprint("console", __name__)
