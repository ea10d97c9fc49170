"""The default sampler with and without the rule that a variant failing every config may not load at all.

    python bench/variant_loads.py [--landscapes 221-240] [--seeds 10] [--out bench/results/variant_loads.json]

Each landscape is a synthetic one of tests/test_search_synthetic.py (432 configs: knob effects, the
instances x threads interaction, a best queue delay and a latency budget, all drawn from the
landscape's seed), under two kinds of failure:

- ``accelerator``: OpenVINO fails every config (an operator or output its plug-in refuses), besides the
  landscape's own draw of precisions that fail on it: the failures are the variant's;
- ``scale``: every variant fails where instances x max batch size is over a limit drawn for the
  landscape (memory running out): the failures are the config's, and the rule should cost nothing.

On each, the default sampler (bo) runs cold (the default config, then the sampler) from each of the
sampler's seeds, with ``tuner.samplers._bo.VARIANT_LOADS`` on and off. It prints, per landscape and
kind, the median over the seeds of the trials until a feasible config within 3% of the best is
measured (a seed that does not get there within 60 trials counts as 120), next to a shuffled grid's
median, and writes them to --out.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_search_synthetic import BUDGET, landscape, shuffled_grid, trials_to_target
from warm_start_failures import _median, ratio_summary, synthetic_args

from tuner.samplers import SearchSpace, _bo
from tuner.study._record import recording_machine

optuna.logging.set_verbosity(optuna.logging.WARNING)

KINDS = {"accelerator": {"accelerator_fails": True}, "scale": {"fails_at_scale": True}}


def _found(judge, space: SearchSpace, seeds: int, on: bool) -> list[int | None]:
    before = _bo.VARIANT_LOADS
    _bo.VARIANT_LOADS = on
    try:
        return [trials_to_target("bo", s, judge, space, BUDGET, warm_start=False) for s in range(seeds)]
    finally:
        _bo.VARIANT_LOADS = before


def main() -> None:
    args, landscapes, space = synthetic_args(__doc__, "221-240", 10, "bench/results/variant_loads.json")
    rows = []
    for kind, failures in KINDS.items():
        for seed in landscapes:
            started = time.perf_counter()
            judge = landscape(seed, **failures)
            with_rule = _found(judge, space, args.seeds, on=True)
            without = _found(judge, space, args.seeds, on=False)
            row = {
                "kind": kind,
                "landscape": seed,
                "with_rule": with_rule,
                "without": without,
                "shuffled_grid": statistics.median(shuffled_grid(s, judge, space) for s in range(25)),
                "median_with_rule": _median(with_rule),
                "median_without": _median(without),
            }
            rows.append(row)
            print(
                f"{kind} {seed}: with the rule {row['median_with_rule']:5.1f} "
                f"({sum(n is not None for n in with_rule)}/{args.seeds}), without {row['median_without']:5.1f} "
                f"({sum(n is not None for n in without)}/{args.seeds}), shuffled grid {row['shuffled_grid']:5.1f}"
                f"  [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
    summary = {}
    for kind in KINDS:
        summary[kind] = ratio_summary([(r["median_with_rule"], r["median_without"]) for r in rows if r["kind"] == kind])
        print(
            f"{kind}: with the rule against without: mean log ratio {summary[kind]['mean_log_ratio']:+.2f}; fewer "
            f"trials on {summary[kind]['fewer']}, the same on {summary[kind]['same']}, more on {summary[kind]['more']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": recording_machine(), "landscapes": rows, "summary": summary, "seeds": args.seeds,
                "budget": BUDGET, "start": "cold"}
    args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
