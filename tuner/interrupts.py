"""A stop that Ctrl-C or SIGTERM asked for, kept until a study's loop has acted on it.

Python runs a signal's handler between two bytecodes of the main thread, wherever that thread is.
Inside a weakref callback or a ``__del__`` (Ray's and gRPC's objects have many), the
KeyboardInterrupt the handler raises is printed as "Exception ignored in ..." and lost: the run went
on as if no signal had come, and with SIGTERM then ignored only SIGKILL could stop it. So a handler
records the stop as well as raising it, and the study loop raises it again where it was lost:

    request()            # in the signal handler, before raising KeyboardInterrupt
    raise_if_requested() # in the study loop: KeyboardInterrupt where a request was not acted on
    clear()              # where the KeyboardInterrupt was caught and the stop carried out
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    """Records that a signal asked the run to stop."""
    _requested.set()


def raise_if_requested() -> None:
    """Raises KeyboardInterrupt where a stop was asked for and not yet acted on.

    Raises:
        KeyboardInterrupt: the stop, once: it counts as acted on from here.
    """
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt


def clear() -> None:
    """No stop is pending: the one asked for was carried out (or was an earlier command's)."""
    _requested.clear()
