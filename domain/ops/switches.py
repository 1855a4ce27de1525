"""The seed's backout switches, as an audited aggregate (who, when, why).

Runbook "Backout": disable secondary reads; turn off the ER assist hook; relax
export gates to manual review; disable traffic shaping. Each is engaged and
released by an operator with a reason, and every process honours the log's
latest state.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import FieldViolation, ValidationError
from domain.topics import keep_stored_topics

BACKOUTS = {
    "disable-secondary-reads": (
        "every read is served by the primary region; x-ig-read-from is ignored"
    ),
    "disable-er-assist": (
        "ER resolve uses the blocking rules alone; no ANN candidates are added"
    ),
    "manual-export-review": (
        "an export the platform floor allows waits as pending_review until "
        "someone else in the tenant with export.approve approves or rejects it"
    ),
    "disable-traffic-shaping": (
        "no tenant is throttled by the autopilot's token buckets"
    ),
}
"""Each switch and what engaging it does."""


class Switchboard(Aggregate):
    """The one set of backout switches (engaged ones, with who and why)."""

    class Started(Aggregate.Created):
        pass

    class Engaged(Aggregate.Event):
        switch: str
        by: str
        reason: str

    class Released(Aggregate.Event):
        switch: str
        by: str
        reason: str

    @staticmethod
    def create_id() -> UUID:
        return uuid5(NAMESPACE_URL, "/platform/backout-switches")

    @event(Started)
    def __init__(self) -> None:
        self.engaged: dict[str, tuple[str, str]] = {}
        """Engaged switch -> (by, reason)."""

    def set(self, switch: str, *, on: bool, by: str, reason: str) -> bool:
        """Engage or release; False (no event) if it is already so."""
        violations = []
        if switch not in BACKOUTS:
            violations.append(
                FieldViolation(
                    "switch", "allowed-value", f"must be one of {', '.join(BACKOUTS)}"
                )
            )
        if not reason.strip() or len(reason) > 500:
            violations.append(FieldViolation("reason", "required", "1-500 characters"))
        if not by.strip():
            violations.append(FieldViolation("by", "required", "who sets it"))
        if violations:
            raise ValidationError(violations)
        if (switch in self.engaged) == on:
            return False
        if on:
            self._engage(switch=switch, by=by, reason=reason)
        else:
            self._release(switch=switch, by=by, reason=reason)
        return True

    @event(Engaged)
    def _engage(self, *, switch: str, by: str, reason: str) -> None:
        self.engaged[switch] = (by, reason)

    @event(Released)
    def _release(self, *, switch: str, by: str, reason: str) -> None:
        del by, reason
        self.engaged.pop(switch, None)


keep_stored_topics(__name__, stored_as="domain.switches")
