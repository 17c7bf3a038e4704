"""Stopping a training run cleanly: Ctrl-C or SIGTERM finish the step and save a checkpoint."""
from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the current step and save; a
    second Ctrl-C aborts at once (KeyboardInterrupt: the command says "aborted")."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step: saving a checkpoint (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
