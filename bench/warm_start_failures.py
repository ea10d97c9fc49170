"""The warm start where its accelerator cannot load the model: queued a config at a time, or up front.

    python bench/warm_start_failures.py [--landscapes 211-220] [--seeds 10] [--out bench/results/warm_start_failures.json]

Each landscape is a synthetic one of tests/test_search_synthetic.py (360 configs: knob effects, the
instances x threads interaction, a best queue delay and a latency budget, all drawn from the
landscape's seed) on which OpenVINO fails every config, as it does on a model whose output rank
its CPU plug-in refuses. On each, the default sampler (bo) runs with the warm start as the study
loop queues it, a config at a time (``tuner.study._initial.queue_initial``: once the accelerator
has failed, the rest is the design without it), and with the same configs queued up front, as
before, where the warm start's second accelerator config fails too. It prints, per landscape, the
median over the sampler's seeds of the trials until a feasible config within 3% of the best is
measured (a seed that does not get there within 60 trials counts as 120), next to a shuffled grid's
median, and writes them to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_search_synthetic import BUDGET, CORES, SPACE, landscape, shuffled_grid, trials_to_target

from tuner import config as cfg
from tuner.samplers import SearchSpace
from tuner.study._record import recording_machine

optuna.logging.set_verbosity(optuna.logging.WARNING)


def median_trials(found: list[int | None]) -> float:
    """The median of trials to target over seeds, a seed that missed counting as twice the budget."""
    return statistics.median(2 * BUDGET if n is None else n for n in found)


def goal_row(found: list[int | None], shuffled: float, grid: int, seeds: int, /, **labels: object) -> dict:
    """A landscape's row against the issue's goal: the median trials to target (``median_trials``), the seeds
    that reached it, and whether the median is at most a quarter of the grid and half a shuffled grid's median
    (``shuffled``) with every seed reaching the target; ``labels`` name the row and come first."""
    median, reached = median_trials(found), sum(n is not None for n in found)
    goal = min(grid / 4, shuffled / 2)
    return {**labels, "found": found, "median": median, "reached": reached, "shuffled_grid": shuffled, "goal": goal,
            "holds": median <= goal and reached == seeds}  # fmt: skip


def goal_summary(rows: list[dict], seeds: int, by: tuple[str, ...]) -> None:
    """Prints, per group of rows alike in the labels ``by``: on how many landscapes the goal holds, the medians'
    range, and the seeds that reached the target."""
    for group in dict.fromkeys(tuple(r[k] for k in by) for r in rows):
        part = [r for r in rows if tuple(r[k] for k in by) == group]
        print(f"{' '.join(map(str, group))}: the goal holds on {sum(r['holds'] for r in part)} of {len(part)}; "
              f"medians {min(r['median'] for r in part):g}-{max(r['median'] for r in part):g}; "
              f"seeds that reached the target {sum(r['reached'] for r in part)} of {seeds * len(part)}")


def ratio_summary(medians: list[tuple[float, float]]) -> dict[str, float]:
    """Over (new, old) medians: the mean log of new / old, and on how many new needed fewer, the same, more."""
    ratios = [math.log(new / old) for new, old in medians]
    return {
        "mean_log_ratio": statistics.fmean(ratios),
        "fewer": sum(x < 0 for x in ratios),
        "same": sum(x == 0 for x in ratios),
        "more": sum(x > 0 for x in ratios),
    }


def synthetic_args(
    doc: str,
    landscapes: str,
    seeds: int,
    out: str | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, range, SearchSpace]:
    """A synthetic benchmark's command line (--landscapes FIRST-LAST, --seeds, --out, with these defaults, and
    what ``extra`` adds), the landscapes' seeds it names, and the landscapes' search space."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--landscapes", default=landscapes, help="seeds of the synthetic landscapes, FIRST-LAST")
    parser.add_argument("--seeds", type=int, default=seeds, help="seeds of the sampler on each landscape")
    parser.add_argument("--out", type=Path, default=None if out is None else Path(out))
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    first, last = (int(x) for x in args.landscapes.split("-"))
    return args, range(first, last + 1), SearchSpace(cfg.SpaceSettings.model_validate(SPACE), CORES)


def main() -> None:
    args, landscapes, space = synthetic_args(__doc__, "211-220", 10, "bench/results/warm_start_failures.json")
    rows = []
    for seed in landscapes:
        started = time.perf_counter()
        judge = landscape(seed, accelerator_fails=True)
        queued = [trials_to_target("bo", s, judge, space, BUDGET) for s in range(args.seeds)]
        up_front = [trials_to_target("bo", s, judge, space, BUDGET, up_front=True) for s in range(args.seeds)]
        shuffled = statistics.median(shuffled_grid(s, judge, space) for s in range(25))
        row = {
            "landscape": seed,
            "a_config_at_a_time": queued,
            "up_front": up_front,
            "shuffled_grid": shuffled,
            "median_a_config_at_a_time": median_trials(queued),
            "median_up_front": median_trials(up_front),
        }
        rows.append(row)
        print(
            f"landscape {seed}: a config at a time {row['median_a_config_at_a_time']:5.1f} "
            f"({sum(n is not None for n in queued)}/{args.seeds}), up front {row['median_up_front']:5.1f} "
            f"({sum(n is not None for n in up_front)}/{args.seeds}), shuffled grid {shuffled:5.1f}"
            f"  [{time.perf_counter() - started:.0f} s]",
            flush=True,
        )
    summary = ratio_summary([(r["median_a_config_at_a_time"], r["median_up_front"]) for r in rows])
    print(
        f"a config at a time against up front: mean log ratio {summary['mean_log_ratio']:+.2f}; "
        f"fewer trials on {summary['fewer']}, the same on {summary['same']}, more on {summary['more']} landscapes"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": recording_machine(),
                "landscapes": rows,
                "summary": summary,
                "seeds": args.seeds,
                "budget": BUDGET,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
