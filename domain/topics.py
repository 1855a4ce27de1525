"""Stored topics are a contract: an event keeps the topic it was first stored under.

A topic names ``module:qualname``. The aggregates' modules moved into
capability folders (``domain/dataset.py`` is now ``domain/catalog/dataset.py``),
but the log, its hash chain, exported logs and every auditor's replay name
the old modules. Each moved module declares where its events are stored
(eventsourcing's explicit ``TOPIC``), so new events are written under the
same topics as before and old ones still resolve.
"""

from __future__ import annotations

import sys

from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic, register_topic


def keep_stored_topics(module_name: str, *, stored_as: str) -> None:
    """Give every aggregate of ``module_name`` and each of its event classes
    the topic it has in the log: ``stored_as:Qualname``."""
    module = sys.modules[module_name]
    for aggregate in vars(module).values():
        if not (
            isinstance(aggregate, type)
            and issubclass(aggregate, Aggregate)
            and aggregate.__module__ == module_name
        ):
            continue
        events = [
            value
            for value in vars(aggregate).values()
            if isinstance(value, type) and issubclass(value, CanMutateAggregate)
        ]
        for cls in (aggregate, *events):
            topic = f"{stored_as}:{cls.__qualname__}"
            cls.TOPIC = topic  # type: ignore[attr-defined]
            register_topic(topic, cls)
            if get_topic(cls) != topic:  # computed (and cached) before this ran
                msg = f"{cls.__qualname__} already has topic {get_topic(cls)!r}"
                raise RuntimeError(msg)
