"""A process that hammers one tenant's bucket (spawned by test_shaping_store).

Kept apart from the test module so that a spawned child imports only this.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from adapters.autopilot.shaping_store import shaping_store
from adapters.ledger.store import open_ledger

REQUEST_WORK_S = 0.001

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event


def hammer(
    url: str,
    tenant: str,
    duration_s: float,
    ready: Queue[object],
    go: Event,
    start: Synchronized[float],
) -> None:
    """Take for duration_s after ``go``, as a busy API process would; report counts.

    Between two takes a real process serves the request (REQUEST_WORK_S, a
    fifth of what one denied export decision costs). A loop with no gap at all
    is not a load any process makes, and on SQLite it measures the busy
    handler rather than the bucket: the holder takes the file's write lock
    again within microseconds while a waiter sleeps 1, 2, 5 ... ms between
    tries, so one process took 76,133 times while another got in once (CI,
    2 cores).
    """
    ledger = open_ledger(url, pool_size=1)
    store = shaping_store(ledger)
    try:
        ready.put("ready")
        go.wait()
        end = start.value + duration_s
        allowed = denied = 0
        first = last = time.time()
        while (now := time.time()) < end:
            result = store.take(tenant, now=now)
            assert result is not None
            if result.allowed:
                allowed += 1
            else:
                denied += 1
            last = now
            time.sleep(REQUEST_WORK_S)
        ready.put((allowed, denied, first, last))
    finally:
        store.close()
        ledger.close()
