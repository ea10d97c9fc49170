"""Recorded landscapes: every config of a grid measured once, replayed instead of a server.

    landscape = load_replay(cfg)                # the study file's search.replay, or None
    pool = ReplayPool(landscape, workers=2)     # keeps tuner.pool's contract

A search strategy is compared with another on exactly the same measurements, in seconds;
``leave_one_out`` judges a default only on landscapes it was not chosen on (bench/search.py --loo).
``tuner landscape record`` (tuner.study) writes the files.
"""

from __future__ import annotations

from tuner.replay._landscape import Landscape, ReplayPool, load_replay, replay_plan
from tuner.replay._protocol import HeldOutChoice, leave_one_out, replay_config, trials_score

__all__ = [
    "HeldOutChoice",
    "Landscape",
    "ReplayPool",
    "leave_one_out",
    "load_replay",
    "replay_config",
    "replay_plan",
    "trials_score",
]
