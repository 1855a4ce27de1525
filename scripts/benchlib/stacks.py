"""Summaries of py-spy raw (collapsed) stacks: where the samples went.

    .venv/bin/python scripts/benchlib/stacks.py FILE.pyspy.txt [--top 25]

Plain module for scripts/bench_core; product code never imports it.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


# (label, predicate over (thread, frames)) — first match wins; for POST /v1/datasets.
BUCKETS = (
    ("projection thread (catalog view upkeep)", lambda t, fs: "projection-" in t),
    ("register: existence check (_same_registration -> repository.get)",
     lambda t, fs: any("_same_registration" in f for f in fs)),
    ("register: save() + group commit + chain hash",
     lambda t, fs: any("LedgerApplication._commit" in f for f in fs)),
    ("register: spec validation + aggregate/event creation",
     lambda t, fs: any("Dataset.register" in f for f in fs)),
    ("handler: rest (command_response, spec_from, ...)",
     lambda t, fs: any("register_dataset" in f for f in fs)),
    ("JWT authentication", lambda t, fs: any("jwt" in f.lower() for f in fs)),
    ("event loop: uvicorn/litestar/msgspec/logging middleware",
     lambda t, fs: "MainThread" in t),
    ("thread pool: other", lambda t, fs: True),
)


def buckets(path: Path) -> str:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else ""
        label = next(lb for lb, pred in BUCKETS if pred(thread, frames))
        counts[label] += int(count)
        total += int(count)
    return "\n".join([f"{path.name}: {total:,} samples, by activity"] +
                     [f"{n / total:6.1%}  {lb}" for lb, n in counts.most_common()])


def summarize(path: Path, top: int = 25) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else ""
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        total += n
        threads[thread] += n
        if frames:
            leaf[_short(frames[-1])] += n
        for f in set(map(_short, frames)):
            inclusive[f] += n
    out = [f"{path.name}: {total:,} samples"]
    out.append("\n-- by thread --")
    out += [f"{n / total:6.1%}  {t}" for t, n in threads.most_common(8)]
    out.append(f"\n-- inclusive (top {top}) --")
    out += [f"{n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    out.append(f"\n-- self (top {top}) --")
    out += [f"{n / total:6.1%}  {f}" for f, n in leaf.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--buckets", action="store_true",
                   help="group samples by activity (POST /v1/datasets profiles)")
    a = p.parse_args()
    print(buckets(a.file) if a.buckets else summarize(a.file, a.top))
