"""The base of Conductor's SQLite read models: own tracking table, own writer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.sqlite import SQLiteTrackingRecorder

from adapters.sql.sqlite_writer import SQLiteWriter

if TYPE_CHECKING:
    from eventsourcing.sqlite import SQLiteDatastore


class SQLiteViewRecorder(SQLiteTrackingRecorder):
    """A tracking recorder whose positions live in ``tracking_table``.

    The library's shared ``tracking`` table keys rows by application name
    only, so two views over one log would collide: each view gets its own.
    A read model may lose its last commits to a power cut (WAL stays
    consistent, tracking rolls back with the rows, the runner redoes them),
    so it need not fsync every batch; the event log does.
    """

    tracking_table: ClassVar[str]

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.writer = SQLiteWriter(datastore, synchronous="NORMAL")
        t = self.tracking_table
        self.insert_tracking_statement = self.insert_tracking_statement.replace(
            "INSERT INTO tracking", f"INSERT INTO {t}"
        ).replace("WHERE tracking.", f"WHERE {t}.")
        self.select_max_tracking_id_statement = (
            self.select_max_tracking_id_statement.replace("FROM tracking", f"FROM {t}")
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            *(
                s.replace("EXISTS tracking (", f"EXISTS {self.tracking_table} (")
                for s in super().construct_create_table_statements()
            ),
            *self.view_tables(),
        ]

    def view_tables(self) -> list[str]:
        """The view's own CREATE statements, after the tracking table's."""
        return []
