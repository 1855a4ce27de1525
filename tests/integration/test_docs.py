"""The docs are run: every `bash runnable` block of README.md and docs/*.md.

Each markdown file's runnable blocks are joined, in order, into one
`bash -euo pipefail` script, run against a throwaway `conductor serve` (SQLite
in the test's directory) with what the README tells a reader to set up:
`$CONDUCTOR` (the base URL), `$TOKEN` (tenant `demo`, every tenant scope),
`$OPERATOR_TOKEN` (the operator scopes) and `conductor` on the PATH. The
script's directory holds the server's `var/` and a `scripts/` link, so the
commands read as they would from the repository root, where `scripts/run`
keeps `./var`.

A shell block that is not run must be listed in NOT_RUN with the reason, so
a new command cannot slip into the docs unrun; links must lead to files.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pytest

from api.auth import OPERATOR_SCOPES, TENANT_SCOPES, issue_token
from tests.conftest import REPO_ROOT, SECRET
from tests.integration.server import Server, cli_env

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

RUNNABLE = "bash runnable"
SHELLS = frozenset({"bash", "sh", "shell", "console", "zsh", "shell-session"})
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
"""The virtualenv's bin (.venv/bin): `conductor` and `python3` for the docs."""
PARALLEL = min(2, os.cpu_count() or 1)
"""Docs run at once: each run is mostly one CPU-bound process at a time."""
SERVER_ENV = {"CONDUCTOR_MIN_POSITION_WAIT_S": "15"}
"""Reads after writes wait on x-ig-min-position; give a loaded machine time."""

NOT_RUN = {
    ("README.md", "git clone <this repository> conductor && cd conductor"): (
        "from an empty machine: clones, makes .venv and runs every acceptance "
        "pack (the DR drill among them, minutes); tests/integration/"
        "test_acceptance.py and test_evidence_bundle.py run the same commands"
    ),
    ("docs/evidence.md", "conductor acceptance run [--pack dr|er|catalog|export"): (
        "a synopsis; tests/integration/test_acceptance.py runs the packs"
    ),
    ("docs/evidence.md", "conductor evidence build --out DIR [--since POSITION]"): (
        "a synopsis; the runnable block below builds and verifies a bundle"
    ),
    ("docs/evidence.md", "conductor verify DIR [--previous EARLIER_DIR]"): (
        "a synopsis; the runnable block below verifies a bundle"
    ),
    ("README.md", "scripts/run     # set up and start the API on"): (
        "sets up .venv and starts the server: the test starts its own"
    ),
    ("README.md", "export CONDUCTOR=http://127.0.0.1:8000"): (
        "the reader's set-up: the test sets CONDUCTOR, TOKEN and PATH itself"
    ),
    ("docs/configuration.md", "conductor serve --workers 2"): (
        "starts servers that run until stopped"
    ),
    ("docs/dr.md", "conductor dr up [--sync|--async]"): (
        "two PostgreSQL clusters as the postgres OS user, and drills of minutes"
    ),
    ("docs/er.md", "conductor er eval --febrl 4 --blocking exact:given_name"): (
        "Febrl evaluations take 5-12 s each, bench_er minutes; a small set is run"
    ),
    ("docs/er.md", 'CONDUCTOR_ER_COMPARISONS="jw:given_name>=0.85'): (
        "needs the 10,000-record hard set (about 10 s)"
    ),
    ("docs/autopilot.md", "conductor autopilot simulate --scenario burst"): (
        "a simulation of hours in virtual time takes 15 s or more"
    ),
    ("docs/benchmarks.md", ".venv/bin/python scripts/bench_core"): (
        "benchmarks of minutes"
    ),
    ("docs/tests.md", "scripts/test -k lineage"): "runs the test suite itself",
    ("docs/runbooks.md", "conductor dr status"): (
        "needs a DR pair (two PostgreSQL clusters as the postgres OS user)"
    ),
    ("docs/runbooks.md", "promtool check rules"): (
        "changes a Prometheus and a Grafana; test_alert_rules.py runs promtool"
    ),
}
"""Shell blocks deliberately not run: (file, first line) -> why."""

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Block:
    """A fenced code block: where it starts, its info string and its text."""

    doc: str
    line: int
    info: str
    text: str

    @property
    def first_line(self) -> str:
        return next((s.strip() for s in self.text.splitlines() if s.strip()), "")


def relative(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of a markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [
            line[indent:] if line[:indent].isspace() else line
            for line in lines[i + 1 : end]
        ]
        found.append(
            Block(relative(path), i + 1, match["info"].strip(), "\n".join(body))
        )
        i = end + 1
    return found


def runnable(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.info == RUNNABLE]


_TRAP = (
    "set -E\n"
    "trap 'echo \"!!! $__doc:$((__line + LINENO - __at)) failed: $BASH_COMMAND\" >&2'"
    " ERR\n"
)
"""Name the markdown line whose command failed (set -E: in functions too)."""


def script(doc: Path) -> str:
    """The doc's runnable blocks as one script, each announced on stderr."""
    parts = [_TRAP]
    for block in runnable(doc):
        parts.append(f"printf '\\n>>> %s:%d\\n' {block.doc!r} {block.line} >&2")
        parts.append(f"__doc={block.doc!r} __line={block.line} __at=$LINENO")
        parts.append(block.text)
    return "\n".join(parts) + "\n"


def excused(block: Block) -> bool:
    """Whether NOT_RUN lists the block (by its file and how its first line starts)."""
    return any(
        block.doc == doc and block.first_line.startswith(first)
        for doc, first in NOT_RUN
    )


def slugs(path: Path) -> set[str]:
    """The anchors GitHub makes of a markdown file's headings."""
    seen: dict[str, int] = {}
    found = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        heading = None if in_code else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def tokens() -> dict[str, str]:
    demo = issue_token(
        SECRET,
        tenant="demo",
        scopes=sorted(TENANT_SCOPES),
        sub="demo",
        ttl=timedelta(hours=1),
    )
    operator = issue_token(
        SECRET,
        tenant="ops",
        scopes=sorted(OPERATOR_SCOPES),
        sub="operator",
        ttl=timedelta(hours=1),
        operator=True,
    )
    return {"TOKEN": demo, "OPERATOR_TOKEN": operator}


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    )


@dataclass(frozen=True)
class Run:
    """How one doc's script ended, and what it and its server printed."""

    returncode: int
    stdout: str
    stderr: str
    server_log: str


def run_doc(doc: Path, tmp: Path) -> Run:
    """Start a server in ``tmp``, run the doc's script against it, stop it."""
    work = tmp / "work"
    var = work / "var"
    (var / "data").mkdir(parents=True)
    (work / "scripts").symlink_to(REPO_ROOT / "scripts")
    database_url = f"sqlite:///{var / 'conductor.db'}"
    server_log = tmp / "server.log"
    path = tmp / "doc.sh"
    path.write_text(script(doc), encoding="utf-8")
    with server_log.open("w", encoding="utf-8") as log:
        try:
            server = Server(database_url, var, log, env=SERVER_ENV)
        except RuntimeError as error:  # it exited, or never became healthy
            return Run(-1, "", f"conductor serve: {error}", tail(server_log))
        try:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", str(path)],
                cwd=work,
                env={
                    **cli_env(database_url, var),
                    **tokens(),
                    "CONDUCTOR": server.base,
                    "PATH": os.pathsep.join((str(BIN), os.environ["PATH"])),
                    "PYTHONPATH": str(REPO_ROOT),
                },
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        finally:
            server.kill()
    return Run(done.returncode, done.stdout, done.stderr, tail(server_log))


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Path, Future[Run]]]:
    """The selected docs' runs, started together, PARALLEL at a time (each has
    its own server and directory); every test waits for its own."""
    wanted = [
        doc
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.module is request.module
        and hasattr(item, "callspec")
        and isinstance(doc := item.callspec.params.get("doc"), Path)
    ]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        yield {
            doc: pool.submit(run_doc, doc, tmp_path_factory.mktemp("doc"))
            for doc in wanted
        }


@pytest.mark.parametrize("doc", [d for d in DOCS if runnable(d)], ids=relative)
def test_the_runnable_blocks_of_a_doc_pass_against_a_fresh_server(
    doc: Path, runs: dict[Path, Future[Run]]
) -> None:
    """Every `bash runnable` block of the file, in order, exits 0."""
    done = runs[doc].result()
    assert done.returncode == 0, (
        f"{relative(doc)}: the script exited {done.returncode}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n"
        f"--- server log (tail)\n{done.server_log}"
    )


def test_every_shell_block_is_run_or_says_why_not() -> None:
    """A shell block is `bash runnable`, or listed in NOT_RUN with its reason;
    and every fence names its language, so none can hide as a bare block."""
    problems = []
    for doc in DOCS:
        for block in blocks(doc):
            where = f"{block.doc}:{block.line}"
            language = block.info.split(maxsplit=1)[0] if block.info else ""
            if not language:
                problems.append(f"{where}: a fence without a language")
            elif block.info == RUNNABLE:
                continue
            elif language in SHELLS and not excused(block):
                problems.append(
                    f"{where}: ```{block.info} is not run: make it ```{RUNNABLE}, "
                    f"or add ({block.doc!r}, {block.first_line[:60]!r}) to NOT_RUN "
                    "with the reason"
                )
    assert not problems, "\n".join(problems)


def test_the_not_run_list_names_only_blocks_that_are_there() -> None:
    """Every NOT_RUN entry still matches a shell block that is not run."""
    present = [block for doc in DOCS for block in blocks(doc) if block.info != RUNNABLE]
    stale = [
        (doc, first)
        for doc, first in NOT_RUN
        if not any(b.doc == doc and b.first_line.startswith(first) for b in present)
    ]
    assert not stale, f"NOT_RUN entries without their block: {stale}"


def test_every_relative_link_leads_to_a_file_that_exists() -> None:
    """Links (and images) in README.md and docs/*.md to files of the repository."""
    broken = []
    for doc in DOCS:
        in_code = False
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if _FENCE.match(line):
                in_code = not in_code
                continue
            if in_code:
                continue
            for match in _LINK.finditer(re.sub(r"`[^`]*`", "", line)):
                target = match["target"].strip("<>")
                if re.match(r"[a-z][a-z0-9+.-]*:", target):
                    continue
                if target.startswith("#"):
                    target = doc.name + target
                file, _, anchor = unquote(target).partition("#")
                path = doc.parent / file
                if not path.exists():
                    broken.append(f"{relative(doc)}:{number}: {target}")
                elif anchor and path.suffix == ".md" and anchor not in slugs(path):
                    broken.append(
                        f"{relative(doc)}:{number}: {target} (no such heading)"
                    )
    assert not broken, "links to nothing:\n" + "\n".join(broken)
