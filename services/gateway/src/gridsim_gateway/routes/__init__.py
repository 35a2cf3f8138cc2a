"""HTTP routes of the gateway, one module per resource, and the helper their OpenAPI examples share."""

from __future__ import annotations

from typing import Any

__all__ = ["json_examples"]


def json_examples(**named: Any) -> dict[str, Any]:
    """A response's ``content`` for OpenAPI: each keyword is a named JSON example."""
    return {"application/json": {"examples": {k: {"value": v} for k, v in named.items()}}}
