"""Progress lines: named units, percentage and ETA, one line per update in a
pipe with no duplicated final line, a live bar in a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

from api.cli.progress import Progress
from tests.conftest import REPO_ROOT


def piped(run: str) -> list[str]:
    """The lines a snippet using ``p`` (a Progress on a pipe) writes."""
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream:
        namespace = {"Progress": Progress, "stream": stream}
        exec(run, namespace)
    with os.fdopen(read) as out:
        return out.read().splitlines()


def test_bytes_are_named_as_bytes_with_percentage_and_eta_in_a_pipe() -> None:
    """The DLP step's (bytes read, bytes total): sizes, %, an ETA until done."""
    lines = piped(
        "p = Progress('exporting', unit='bytes', stream=stream, delay=0, every=0)\n"
        "p.update(1_000_000, total=4_000_000)\n"
        "p.update(1_000_000)\n"  # the same progress again: no new line
        "p.update(2_000_000)\n"
        "p.finish(4_000_000)\n"
    )
    assert len(lines) == 3, lines
    assert lines[0].startswith("exporting: 1.0 MB of 4.0 MB (25.0%)")
    assert "ETA" in lines[0]
    assert "rows" not in " ".join(lines)
    assert lines[2].startswith("exporting: 4.0 MB of 4.0 MB (100.0%)")
    assert "ETA" not in lines[2]


def test_the_final_line_is_not_printed_twice() -> None:
    """finish() after an update that already showed the end adds nothing."""
    lines = piped(
        "p = Progress('verified', 10, unit='events', stream=stream, delay=0, every=0)\n"
        "p.update(10)\n"
        "p.finish(10)\n"
    )
    assert len(lines) == 1
    assert lines[0].startswith("verified: 10 events of 10 events (100.0%)")


def test_a_quick_command_prints_no_progress_in_a_pipe() -> None:
    """Under the one-second delay, neither updates nor finish write a line."""
    lines = piped(
        "p = Progress('rebuilding catalog', 5, unit='events', stream=stream)\n"
        "p.update(3)\n"
        "p.finish(5)\n"
    )
    assert lines == []


def test_updates_in_a_pipe_are_at_most_every_interval() -> None:
    """Many updates within the interval are one line; the total is unknown."""
    lines = piped(
        "p = Progress('embedding', unit='records', stream=stream, delay=0, every=60)\n"
        "for i in range(1, 1001):\n"
        "    p.update(i)\n"
        "p.finish(1000)\n"
    )
    assert [line.split(", ")[0] for line in lines] == [
        "embedding: 1 records",
        "embedding: 1,000 records",
    ]


def test_er_eval_reports_its_steps_and_a_piped_progress_shows_them() -> None:
    """evaluate() tells its callback each of its steps in order, ending at the
    total; through a piped Progress that is one line per step, the last 100 %."""
    from adapters.er.embedder import HashingEmbedder  # noqa: PLC0415
    from adapters.er.files import labeled  # noqa: PLC0415
    from adapters.er.hnsw import HnswParams, HnswSearch  # noqa: PLC0415
    from application.er.evaluation import EVAL_STEPS, evaluate  # noqa: PLC0415
    from application.er.rules import (  # noqa: PLC0415
        DEFAULT_COMPARISONS,
        Blocking,
        Gate,
    )
    from tests.unit.test_er_eval import TINY_LINKS, Keys, tiny  # noqa: PLC0415

    data = labeled(tiny(), TINY_LINKS)
    vectors = HashingEmbedder(Keys()).embed("t", data.left)
    calls: list[tuple[int, int]] = []
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream:
        progress = Progress(
            "evaluating", EVAL_STEPS, unit="steps", stream=stream, delay=0, every=0
        )

        def told(done: int, total: int) -> None:
            calls.append((done, total))
            progress.update(done)

        evaluate(
            data,
            blocking=Blocking.parse("exact:postcode"),
            gate=Gate.parse(DEFAULT_COMPARISONS, 6),
            neighbours=HnswSearch(HnswParams()),
            vectors=(vectors, None),
            k=5,
            progress=told,
        )
        progress.finish(EVAL_STEPS)
    with os.fdopen(read) as out:
        lines = out.read().splitlines()
    assert calls == [(n, EVAL_STEPS) for n in range(1, EVAL_STEPS + 1)]
    assert [line.split(", ")[0] for line in lines] == [
        f"evaluating: {n} steps of {EVAL_STEPS} steps ({100 * n / EVAL_STEPS:.1f}%)"
        for n in range(1, EVAL_STEPS + 1)
    ]
    assert "ETA" in lines[0]
    assert "ETA" not in lines[-1]


SNIPPET = """
import time
from api.cli.progress import Progress
p = Progress("rebuilding catalog", 200, unit="events")
for i in range(0, 201, 20):
    p.update(i)
    time.sleep(0.05)
p.finish(200)
"""


def test_a_terminal_gets_a_live_bar_with_percentage() -> None:
    """In a pseudo-terminal: rich redraws one line (carriage returns or
    cursor moves), shows the percentage, and ends at 200/200 events."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", SNIPPET],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=30)
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, screen
    assert "\x1b[" in screen or "\r" in screen  # redrawn in place
    assert "rebuilding catalog" in screen
    assert "200/200" in screen
    assert "events" in screen
    assert "100%" in screen
