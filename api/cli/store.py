"""Wrong paths fail loudly: the CLI opens an existing store, or says where it looked.

Opening the event log creates it when it is missing (a SQLite file, or the
tables in a PostgreSQL database), so a typo in CONDUCTOR_VAR or the database
URL, or running from another folder, used to give a fresh empty store that
answers "ok: 0 events". Creating one now takes `conductor init`, `serve
--init` or CONDUCTOR_INIT=1 (scripts/run does it on the first start).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from api.runtime.dr import ledger_label, uses_dr_ledger

if TYPE_CHECKING:
    from api.settings import Settings

CONNECT_TIMEOUT_S = 5
"""How long a check waits for PostgreSQL (the driver's default is 10 s per try)."""


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


def sqlite_path(database_url: str) -> Path | None:
    """The file of a sqlite:/// URL (as the ledger resolves it), else None."""
    url = urlsplit(database_url)
    if url.scheme != "sqlite":
        return None
    return Path(unquote(url.path).removeprefix("/"))


def postgres_address(database_url: str) -> str:
    """host:port of a PostgreSQL URL, for error messages."""
    url = urlsplit(database_url)
    return f"{url.hostname or '127.0.0.1'}:{url.port or 5432}"


def _postgres_has_log(database_url: str) -> bool:
    import psycopg  # noqa: PLC0415 - only PostgreSQL stores need it

    try:
        with psycopg.connect(
            database_url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
        ) as conn:
            row = conn.execute("SELECT to_regclass('event_chain')").fetchone()
    except psycopg.OperationalError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        database = unquote(urlsplit(database_url).path.lstrip("/")) or "postgres"
        msg = (
            f"cannot reach PostgreSQL at {postgres_address(database_url)} "
            f"(database {database!r}): {first}"
        )
        raise UserError(msg) from None
    return row is not None and row[0] is not None


def store_exists(settings: Settings) -> bool:
    """Whether the configured store holds a Conductor log (a DR pair always
    does: `conductor dr up` made it)."""
    if uses_dr_ledger(settings):
        return True
    url = settings.resolved_database_url
    path = sqlite_path(url)
    if path is not None:
        return path.is_file()
    return _postgres_has_log(url)


def where(settings: Settings) -> str:
    """What the CLI looked at, as the user would correct it."""
    url = settings.resolved_database_url
    path = sqlite_path(url)
    if path is not None and not settings.database_url:
        return f"{path.resolve()} (CONDUCTOR_VAR={settings.var})"
    if path is not None:
        return f"{path.resolve()} (CONDUCTOR_DATABASE_URL)"
    return f"{ledger_label(settings)} (CONDUCTOR_DATABASE_URL)"


def require_store(settings: Settings) -> None:
    """Raise UserError unless the store exists (or may be created)."""
    if settings.init or store_exists(settings):
        return
    msg = (
        f"no Conductor store at {where(settings)}; run from the folder the "
        "server runs in, set CONDUCTOR_VAR / CONDUCTOR_DATABASE_URL as the "
        "server has them, or create one with `conductor init`"
    )
    raise UserError(msg)


def require_secret(settings: Settings) -> str:
    """The JWT secret the server uses; never a new one."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.var_path / "jwt-secret"
    if not path.is_file():
        msg = (
            f"no JWT secret: CONDUCTOR_JWT_SECRET is unset and {path.resolve()} "
            "does not exist; a new secret would sign tokens the server rejects. "
            "Point CONDUCTOR_VAR at the server's, or run `conductor init`"
        )
        raise UserError(msg)
    return path.read_text().strip()
