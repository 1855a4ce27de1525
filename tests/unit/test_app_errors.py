"""What the app logs for a 5xx: a hang-up is not a server fault."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from litestar.exceptions import InternalServerException
from structlog.testing import capture_logs

import api.app
from api.app import log_unexpected
from api.problems import Problem


@pytest.fixture(autouse=True)
def _fresh_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's logger may be bound (and cached) by an earlier app's
    configure_logging; a fresh one binds inside capture_logs."""
    monkeypatch.setattr(api.app, "_log", structlog.get_logger("conductor.http"))


def _logged(error: Exception) -> list[dict[str, object]]:
    with capture_logs() as logs:
        asyncio.run(log_unexpected(error, {"path_template": "/v1/exports"}))  # type: ignore[arg-type]
    return logs


def test_a_client_hanging_up_mid_body_is_logged_as_info_without_a_traceback() -> None:
    logs = _logged(InternalServerException("client disconnected prematurely"))
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("client_disconnected", "info")
    ]
    assert "exc_info" not in logs[0]


def test_other_server_errors_are_logged_as_errors_with_the_exception() -> None:
    error = RuntimeError("boom")
    logs = _logged(error)
    assert [(e["event"], e["log_level"]) for e in logs] == [("request_failed", "error")]
    assert logs[0]["exc_info"] is error
    assert _logged(InternalServerException("something else"))[0]["event"] == (
        "request_failed"
    )


def test_a_deliberate_5xx_problem_is_a_warning_naming_its_type() -> None:
    logs = _logged(Problem(503, "the standby lags", kind="replica-lagging"))
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("request_refused", "warning")
    ]
    assert logs[0]["type"] == "/problems/replica-lagging"
    assert logs[0]["status"] == 503
    assert "exc_info" not in logs[0]
