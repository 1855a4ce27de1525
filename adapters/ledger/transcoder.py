"""Stored event states as RFC 8785 canonical JSON.

The library's JSONTranscoder already writes compact UTF-8 JSON; sorting the
keys makes it RFC 8785 for every value our events hold (str, int, bool, None,
lists, objects with ASCII keys; floats are banned from events). A property
test holds this against the rfc8785 package.
"""

from __future__ import annotations

import json

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    UUIDAsHex,
)


class CanonicalJSONTranscoder(JSONTranscoder):
    """JSONTranscoder with sorted keys: canonical bytes, so states hash stably."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = json.JSONEncoder(
            default=self._encode_obj,
            separators=(",", ":"),
            ensure_ascii=False,
            sort_keys=True,
            allow_nan=False,
        )
        self.register(UUIDAsHex())
        self.register(DecimalAsStr())
        self.register(DatetimeAsISO())
