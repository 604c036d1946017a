"""Stopping cleanly: the first Ctrl-C, SIGTERM (what ``kill`` and job schedulers send) or
SIGHUP (a closed terminal) asks for a save and a stop; a second one aborts at once. The last
checkpoint on disk stays intact either way."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def first_signal_stops(on_first: Callable[[str], None]) -> Iterator[Callable[[], bool]]:
    """Within the block, the first stopping signal calls ``on_first`` with its name and sets
    the flag this yields (a function); a second raises :class:`KeyboardInterrupt`. Outside the
    main thread, where handlers cannot be set, the flag stays false.

    Example:
        >>> with first_signal_stops(print) as stopped:
        ...     while not stopped():
        ...         break
    """
    hit = [False]

    def handler(signum: int, frame: object) -> None:
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True
        on_first(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {s: signal.signal(s, handler) for s in STOPPING}
    try:
        yield lambda: hit[0]
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


def die_with_parent() -> None:
    """In a child process (a comparison's worker, a rank of ``--nproc``): ask Linux to send
    SIGTERM when the parent dies, however it dies (SIGKILL included), so that the child saves
    and stops instead of training on, orphaned. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    set_parent_death_signal = 1  # PR_SET_PDEATHSIG in <linux/prctl.h>
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(set_parent_death_signal, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
