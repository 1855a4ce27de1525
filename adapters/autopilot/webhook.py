"""An issue sink that POSTs JSON to a webhook (CONDUCTOR_ISSUE_WEBHOOK_URL).

Opens and resolves go to the same URL; the payload's ``action`` tells them
apart. Errors name the status or the cause, never the payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from application.autopilot.incident_records import SinkError

if TYPE_CHECKING:
    from collections.abc import Mapping

_ID_FIELDS = ("id", "number", "url")
"""Where a tracker's reply names the issue it opened, in order of preference."""


class WebhookSink:
    """Open and resolve issues with one POST each."""

    def __init__(self, url: str, timeout_s: float = 5) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout_s)

    def open(self, payload: Mapping[str, Any]) -> str:
        """POST an open; the reply's id, number or url, else the dedup_key."""
        response = self._post(payload)
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if isinstance(reply, dict):
            for name in _ID_FIELDS:
                value = reply.get(name)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    return str(value)
        return str(payload["dedup_key"])

    def resolve(self, external_id: str, payload: Mapping[str, Any]) -> None:
        """POST a resolve naming the issue's external id."""
        self._post({**payload, "action": "resolve", "external_id": external_id})

    def close(self) -> None:
        self._client.close()

    def _post(self, payload: Mapping[str, Any]) -> httpx.Response:
        try:
            response = self._client.post(
                self.url,
                content=msgspec.json.encode(payload),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as error:
            # httpx's messages name the cause (refused, timed out), not the body.
            msg = f"webhook unreachable: {type(error).__name__}: {error}"
            raise SinkError(msg) from None
        if not response.is_success:
            msg = f"webhook answered {response.status_code}"
            raise SinkError(msg)
        return response
