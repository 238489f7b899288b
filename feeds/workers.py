"""Worker processes that die with the process that started them.

A build that is killed (``kill -9``, the OOM killer) cannot shut its pools down: without
more, their workers, some 70 MB each, are left blocked on their pipes for good, adopted
by init. Linux can send a process a signal when its parent dies (``prctl(2)``,
``PR_SET_PDEATHSIG``); each worker asks for SIGKILL before it does any work.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_pool(workers: int, method: str) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started by ``method`` ("fork" or "spawn"), each of
    which dies when this process does, however it dies."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies, and leave at once if
    ``parent`` has died already (before the request, nothing would come: the worker was
    adopted, and its parent is another process now).

    The kernel means the parent *thread*: pools start their workers from the thread that
    uses them (ProcessPoolExecutor launches at the first submit), which waits for them.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)
