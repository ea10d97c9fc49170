"""Do recommendations hold? Short studies run, and each recommendation served fresh and measured again.

    python bench/verify.py [--studies 3] [--trials 6] [--repeats 3] [--window-ms 1000]
                           [--study-file search_spaces/digits_forest_cpu.yaml ...] [--out bench/results/verify.json]

For each study file (default: the digits_forest one and the quickstart's text detection one), runs
``--studies`` short studies of it (the file's own search with ``--trials`` trials, a seed per
study, ``--window-ms`` windows) on the real server and perf_analyzer, then verifies each
recommendation as `tuner verify` does (tuner.reports._verify: export, a fresh server, ``--repeats`` runs on
fresh loads). Prints and writes the verified median against the stored median and interval.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner.config import StudyConfig, parse_config
from tuner.model import _bundled as models
from tuner.reports import record, verify_study
from tuner.reports._verify import Verification
from tuner.storage import Store
from tuner.study import StudyRunner
from tuner.triton import cpu_model, versions
from tuner.workers import cpu_cores

DEFAULT_FILES = (ROOT / "search_spaces" / "digits_forest_cpu.yaml", ROOT / "search_spaces" / "text_detection_cpu.yaml")


def study_config(path: Path, index: int, folder: Path, trials: int, window_ms: int) -> StudyConfig:
    """The study file ``path``, shortened: ``trials`` trials, seed ``index``, storage and work in ``folder``."""
    data = yaml.safe_load(path.read_text())
    model = data["model"]
    if not (path.parent / model["path"]).is_file():  # a bundled model not prepared yet
        models.prepare(model["name"], ROOT / "model_repository")
    data["study"] = f"{data['study']}-{index}"
    data["storage"] = f"sqlite:///{folder / 'bench.db'}"
    data["work_dir"] = str(folder / "work")
    data["search"] = {**data["search"], "n_trials": trials, "seed": index}
    data["load"] = {**data.get("load", {}), "measurement_window_ms": window_ms}
    return parse_config(data, path.parent)


def run_one(cfg: StudyConfig, repeats: int) -> dict:
    """Runs the study, verifies its recommendation and says how the two compare."""
    store = Store(cfg.storage)
    started = time.perf_counter()
    StudyRunner(cfg, store).run()
    study_s = time.perf_counter() - started
    study = optuna.load_study(study_name=cfg.study, storage=store.optuna)
    started = time.perf_counter()
    verification = verify_study(study, store, repeats=repeats)
    record(study, verification)
    return summary(cfg.study, verification, study_s, time.perf_counter() - started)


def summary(name: str, v: Verification, study_s: float, verify_s: float) -> dict:
    return {
        "study": name,
        "trial": v.trial,
        "config": json.loads(v.config_key) if v.config_key.startswith("{") else v.config_key,
        "metric": v.metric,
        "concurrency": v.concurrency,
        "stored_median": round(v.stored_median, 2),
        "interval": [round(x, 2) for x in v.interval],
        "verified_median": round(v.verified_median, 2),
        "runs": [round(r.value, 2) for r in v.runs],
        "off_pct": round(v.off_pct, 1) if v.off_pct is not None else None,
        "in_interval": v.interval[0] <= v.verified_median <= v.interval[1],
        "holds": v.holds,
        "verdict": v.verdict,
        "contaminated_runs": v.contaminated_runs,
        "line": v.line(),
        "study_s": round(study_s, 1),
        "verify_s": round(verify_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=3, help="studies per study file")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-ms", type=int, default=1000)
    parser.add_argument("--study-file", type=Path, action="append", help="repeatable [default: digits and quickstart]")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "verify.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.study_file or DEFAULT_FILES:
            for index in range(args.studies):
                folder = Path(tmp) / f"{path.stem}-{index}"
                folder.mkdir()
                result = run_one(study_config(path.resolve(), index, folder, args.trials, args.window_ms), args.repeats)
                print(f"{result['study']}: trial {result['trial']} {result['line']}", flush=True)
                results.append(result | {"study_file": str(path.resolve().relative_to(ROOT))})
    offs = [abs(r["off_pct"]) for r in results if r["off_pct"] is not None]
    report = {
        "machine": f"{platform.machine()}, {cpu_cores()} cores, {cpu_model()}, Python {platform.python_version()}",
        "versions": versions(),
        "trials": args.trials,
        "repeats": args.repeats,
        "window_ms": args.window_ms,
        "held": sum(r["holds"] for r in results),
        "within_interval": sum(r["in_interval"] for r in results),
        "studies": len(results),
        "median_abs_off_pct": round(statistics.median(offs), 1) if offs else None,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['held']} of {report['studies']} recommendations held ({report['within_interval']} within their "
          f"interval; median |verified - stored| {report['median_abs_off_pct']}%); written to {args.out}")


if __name__ == "__main__":
    main()
