"""What the tests read from a started Triton server: one definition instead of a copy per test module."""

from __future__ import annotations

import time
from typing import Any


def settled_statistics(server: Any, name: str, inferences: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """Model ``name``'s statistics once they count ``inferences`` (or at the timeout).

    The server counts a request after it answers it (the python backend reports an execution's
    statistics after sending its responses), so a client holding every answer can read a count
    that lags them. ``server`` is any of the tuner's servers (``model_statistics``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = server.model_statistics(name)["model_stats"][0]
        if int(stats["inference_count"]) >= inferences or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)
