"""Read models in plain SQL that SQLite and PostgreSQL both speak.

A view writes its queries once with ``?`` placeholders (``_sql`` spells them
for the backend) and reads and writes through ``_reading``/``_writing``; the
two backend bases below supply the transactions, the own tracking table, the
schema lock and reset, so each view only says what its tables are.
List the backend base first: ``class SQLiteFooView(SQLiteSqlView, _FooSQL)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder

from adapters.sql.pg_schema import schema_lock
from adapters.sql.sqlite_view import SQLiteViewRecorder

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


class SqlView(ABC):
    """The queries' side: placeholders, and the hooks the backends fill in."""

    mark: ClassVar[str] = "?"

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A read-only transaction yielding a cursor."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Any]:
        """A write transaction yielding a cursor."""

    view_rows: ClassVar[tuple[str, ...]]
    """The view's tables: emptied, with its tracking positions, by reset."""

    def _drop_rows(self, c: Any, tracking_table: str) -> None:
        """Delete the view's rows and its tracking positions (for reset).

        The library's "__migration__" marker row stays, or the next open
        would run its migrations again on tables that exist.
        """
        for table in self.view_rows:
            c.execute(f"DELETE FROM {table}")
        c.execute(
            self._sql(f"DELETE FROM {tracking_table} WHERE application_name != ?"),
            ("__migration__",),
        )


class SQLiteSqlView(SqlView, SQLiteViewRecorder):
    """A view in the event log's SQLite file, written by its own writer."""

    def _reading(self) -> AbstractContextManager[Any]:
        return self.datastore.transaction(commit=False)

    def _writing(self) -> AbstractContextManager[Any]:
        return self.writer.transaction()

    def reset(self) -> None:
        with self.writer.transaction() as c:
            self._drop_rows(c, self.tracking_table)

    def close(self) -> None:
        self.writer.close()


class PostgresSqlView(SqlView, PostgresTrackingRecorder):
    """A view in the event log's PostgreSQL database, its own tracking table."""

    mark: ClassVar[str] = "%s"
    tracking_table: ClassVar[str]

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        kwargs["tracking_table_name"] = self.tracking_table
        super().__init__(datastore, **kwargs)
        from psycopg.sql import SQL  # noqa: PLC0415

        self.sql_create_statements += [
            SQL(statement).format() for statement in self.view_tables()
        ]

    def view_tables(self) -> list[str]:
        """The view's own CREATE statements, after the tracking table's."""
        return []

    def create_table(self) -> None:
        with schema_lock(self.datastore):
            super().create_table()

    def _reading(self) -> AbstractContextManager[Any]:
        return self.datastore.transaction(commit=False)

    def _writing(self) -> AbstractContextManager[Any]:
        return self.datastore.transaction(commit=True)

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._drop_rows(c, self.tracking_table_name)
