"""The default sampler with one of its switches on and off, on synthetic landscapes.

    python bench/synthetic_switch.py --switch NAME [--kinds accelerator,scale] [--start cold]
                                     [--landscapes 221-240] [--seeds 10] [--out bench/results/NAME.json]

``NAME`` is a switch of the bo sampler, a boolean module default of tuner.samplers._bo that bench/search.py's
variants may set (``BO_DEFAULTS``), such as ``VARIANT_LOADS`` (a
variant that failed every config may not load at all), ``BOUNDED_SCALE`` (the Gaussian processes'
length scales bounded by the space's diameter), ``THREADS_KNOB`` (the threads a config runs against the
cores as a knob of the models' inputs), ``GP_PRIOR`` (the Gaussian processes' hyperparameters the most
probable under Optuna's priors) or ``GP_AVERAGE`` (their predictions averaged over their length scales). Each landscape is a synthetic one of
tests/test_search_synthetic.py (360 configs: knob effects, the instances x threads interaction, a best
queue delay and a latency budget, all drawn from the landscape's seed), under one of these kinds:

- ``plain``: every config loads;
- ``accelerator``: OpenVINO fails every config (an operator or output its plug-in refuses), besides the
  landscape's own draw of precisions that fail on it: the failures are the variant's;
- ``scale``: every variant fails where instances x max batch size is over a limit drawn for the
  landscape (memory running out): the failures are the config's;
- ``threads``: every config loads, and a thread per instance helps less than an instance by a drawn
  factor (2 instances x 1 thread 1.3-1.7 times as fast as 1 x 2, as on the recorded landscapes).

On each, the default sampler (bo) runs from each of the sampler's seeds, cold (the default config, then
the sampler) or warm-started (``--start``), with the switch on and off. It prints, per landscape, kind and
start, the median over the seeds of the trials until a feasible config within 3% of the best is measured
(a seed that does not get there within 60 trials counts as 120), next to a shuffled grid's median, and
writes them to --out.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from search import BO_DEFAULTS, sampler_defaults
from test_search_synthetic import BUDGET, landscape, shuffled_grid, trials_to_target
from warm_start_failures import median_trials, ratio_summary, synthetic_args

from tuner.samplers import SearchSpace
from tuner.study._record import recording_machine

optuna.logging.set_verbosity(optuna.logging.WARNING)

KINDS = {"plain": {}, "accelerator": {"accelerator_fails": True}, "scale": {"fails_at_scale": True},
         "threads": {"threads_pay_less": True}}
#: The switches: each boolean module default (its name) by the setting bench/search.py's variants give it.
SWITCHES = {name: setting for setting, (module, name) in BO_DEFAULTS.items() if isinstance(getattr(module, name), bool)}


def _found(judge, space: SearchSpace, seeds: int, switch: str, on: bool, warm: bool) -> list[int | None]:
    with sampler_defaults({SWITCHES[switch]: on}):
        return [trials_to_target("bo", s, judge, space, BUDGET, warm_start=warm) for s in range(seeds)]


def main() -> None:
    def extra(parser) -> None:
        parser.add_argument("--switch", required=True, choices=sorted(SWITCHES))
        parser.add_argument("--kinds", default="accelerator,scale", help=f"of {', '.join(KINDS)}, comma-separated")
        parser.add_argument("--start", default="cold", help="cold, warm or cold,warm")

    args, landscapes, space = synthetic_args(__doc__, "221-240", 10, None, extra)
    kinds = args.kinds.split(",")
    starts = args.start.split(",")
    rows = []
    for start in starts:
        for kind in kinds:
            for seed in landscapes:
                started = time.perf_counter()
                judge = landscape(seed, **KINDS[kind])
                on = _found(judge, space, args.seeds, args.switch, True, start == "warm")
                off = _found(judge, space, args.seeds, args.switch, False, start == "warm")
                row = {
                    "start": start,
                    "kind": kind,
                    "landscape": seed,
                    "on": on,
                    "off": off,
                    "shuffled_grid": statistics.median(shuffled_grid(s, judge, space) for s in range(25)),
                    "median_on": median_trials(on),
                    "median_off": median_trials(off),
                }
                rows.append(row)
                print(
                    f"{start} {kind} {seed}: on {row['median_on']:5.1f} ({sum(n is not None for n in on)}/"
                    f"{args.seeds}), off {row['median_off']:5.1f} ({sum(n is not None for n in off)}/{args.seeds}), "
                    f"shuffled grid {row['shuffled_grid']:5.1f}  [{time.perf_counter() - started:.0f} s]",
                    flush=True,
                )
    summary = {}
    for start in starts:
        for kind in kinds:
            part = [r for r in rows if r["kind"] == kind and r["start"] == start]
            result = ratio_summary([(r["median_on"], r["median_off"]) for r in part])
            result["reached_on"] = sum(n is not None for r in part for n in r["on"])
            result["reached_off"] = sum(n is not None for r in part for n in r["off"])
            summary[f"{start} {kind}"] = result
            print(
                f"{start} {kind}: {args.switch} on against off: mean log ratio {result['mean_log_ratio']:+.2f}; "
                f"fewer trials on {result['fewer']}, the same on {result['same']}, more on {result['more']}; "
                f"seeds that reached the target {result['reached_on']} against {result['reached_off']}"
            )
    out = args.out or Path(f"bench/results/{args.switch.lower()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": recording_machine(), "switch": args.switch, "landscapes": rows, "summary": summary,
                "seeds": args.seeds, "budget": BUDGET}  # fmt: skip
    out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
