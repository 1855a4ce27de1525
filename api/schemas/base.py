"""The base of every body (camelCase, unknown fields refused); the command reply."""

from __future__ import annotations

from uuid import UUID  # noqa: TC003 - msgspec resolves at runtime

import msgspec


class In(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Base of request bodies."""


class Out(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """Base of response bodies."""


class CommandAccepted(Out, frozen=True):
    id: UUID
    version: int
    position: int | None
    """Log position of the last event written (null when nothing changed)."""
