"""`python -m adapters.dr.daemon ROOT`: keep a pair's relay and heartbeat running.

`conductor dr up` starts it detached and records its pid in dr.json;
`conductor dr down` stops it with SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from adapters.dr.site import attach_site


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m adapters.dr.daemon ROOT\n")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    site = attach_site(Path(argv[0]))
    try:
        stop.wait()
    finally:
        site.close(destroy=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
