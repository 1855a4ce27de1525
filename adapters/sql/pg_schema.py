"""Serialise schema creation across processes on PostgreSQL.

The library's create_table() runs CREATE ... IF NOT EXISTS and CREATE OR
REPLACE FUNCTION statements; run by several processes at once (API workers and
the projector starting together) they fail with "tuple concurrently updated"
or duplicate pg_type keys. A session advisory lock held around them fixes it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.postgres import PostgresDatastore

LOCK_KEY = 0x434F4E44  # "COND"


@contextmanager
def schema_lock(datastore: PostgresDatastore) -> Iterator[None]:
    """Hold Conductor's schema advisory lock (blocking) for the block."""
    with datastore.get_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
