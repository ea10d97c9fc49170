"""The default sampler, as shipped, against the search goal on synthetic landscapes no default was chosen on.

    python bench/synthetic_goal.py [--landscapes 104-123] [--seeds 20] [--kinds plain] [--start warm,cold]
                                   [--out bench/results/synthetic_goal.json]

Each landscape is a synthetic one of tests/test_search_synthetic.py (360 configs, one of them within 3% of
the best: knob effects, the instances x threads interaction, a best queue delay and a latency budget, all
drawn from the landscape's seed), of a kind of bench/synthetic_switch.py. On each, the default sampler (bo)
runs from each of the sampler's seeds, warm-started and cold, for at most 60 trials. It prints, per landscape,
kind and start, the median trials until a feasible config within 3% of the best is measured (a seed that does
not get there counts as 120), the seeds that got there, a shuffled grid's median (25 orders), and whether the
issue's goal holds: a median of at most a quarter of the grid and at most half a shuffled grid's, every seed
reaching the target. It writes the same to --out.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_switch import KINDS
from test_search_synthetic import BUDGET, landscape, shuffled_grid, trials_to_target
from warm_start_failures import goal_row, goal_summary, synthetic_args

from tuner.study._record import recording_machine

optuna.logging.set_verbosity(optuna.logging.WARNING)


def main() -> None:
    def extra(parser) -> None:
        parser.add_argument("--kinds", default="plain", help=f"of {', '.join(KINDS)}, comma-separated")
        parser.add_argument("--start", default="warm,cold", help="warm, cold or warm,cold")

    args, landscapes, space = synthetic_args(__doc__, "104-123", 20, "bench/results/synthetic_goal.json", extra)
    grid = len(space.combinations())
    rows = []
    for start in args.start.split(","):
        for kind in args.kinds.split(","):
            for seed in landscapes:
                started = time.perf_counter()
                judge = landscape(seed, **KINDS[kind])
                found = [trials_to_target("bo", s, judge, space, BUDGET, warm_start=start == "warm")
                         for s in range(args.seeds)]  # fmt: skip
                shuffled = statistics.median(shuffled_grid(s, judge, space) for s in range(25))
                row = goal_row(found, shuffled, grid, args.seeds, start=start, kind=kind, landscape=seed)
                rows.append(row)
                print(
                    f"{start} {kind} {seed}: {row['median']:5.1f} ({row['reached']}/{args.seeds}), shuffled grid "
                    f"{shuffled:5.1f}, goal {row['goal']:5.1f}: {'holds' if row['holds'] else 'misses'}  "
                    f"[{time.perf_counter() - started:.0f} s]",
                    flush=True,
                )
    goal_summary(rows, args.seeds, by=("start",))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": recording_machine(), "grid": grid, "seeds": args.seeds, "budget": BUDGET, "landscapes": rows}
    args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
