"""What a process that trains does with the SIGTERM Ray sends as it ends it."""

from __future__ import annotations

import atexit
import functools
import signal
import sys


@functools.cache
def end_quietly_on_sigterm() -> None:
    """Let a SIGTERM that Ray sends this process as it ends it leave no traceback.

    A Ray worker's SIGTERM handler raises ``SystemExit`` so that the process
    shuts Ray down on its way out. In a process that trained a run, the signal
    often lands where Python cannot raise, only print: in a finalizer or a weakref
    callback (torch and a model loaded free many objects, at exit and at each
    collection), and in the exit callbacks (Ray's shutdown among them), which take
    a while. Under a run that succeeded the user then reads
    ``Exception ignored in ... sigterm_handler ... SystemExit: 1``. So:

    - a ``SystemExit`` raised where it can only be ignored is not printed (the
      process goes on ending as it was, which Python's own handling does too);
      every other such exception still is;
    - once the process exits, SIGTERM ends it as it would any program: there is
      nothing left to shut down. This runs first among the exit callbacks (they
      run last registered first), in the main thread, where Python allows setting
      a handler.
    """
    atexit.register(signal.signal, signal.SIGTERM, signal.SIG_DFL)
    shown = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, SystemExit):
            return
        shown(unraisable)

    sys.unraisablehook = hook
