"""Trial failures carry a kind; a full disk is found wherever in the chain of causes it lies."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from tuner.errors import MeasurementError, ModelError, ServerStartError, VariantError
from tuner.measure._perf_analyzer import check_disk
from tuner.trial import Failure, TrialOutcome, TrialSpec
from tuner.workers._worker import trial_failure

SPEC = TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)


def _raised_from(error: Exception, cause: BaseException) -> Exception:
    try:
        raise error from cause
    except Exception as exc:  # noqa: BLE001 - the point is the chained exception
        return exc


def test_a_full_disk_under_a_wrapped_error_is_disk_full() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "variant.onnx")
    for wrapped in (ModelError("no fp16 variant"), ServerStartError("cannot run tritonserver")):
        error, kind = trial_failure(_raised_from(wrapped, full), SPEC)
        assert kind == Failure.DISK_FULL and "No space left" in error


def test_a_precision_the_model_has_no_variant_of_is_a_failure_of_its_own() -> None:
    error, kind = trial_failure(VariantError("no INT8 variant: the model has no operator ONNX Runtime quantizes"), SPEC)
    assert kind == Failure.VARIANT and error.startswith("fp32 variant: no INT8 variant")
    assert trial_failure(ModelError("weights.bin is missing"), SPEC)[1] == Failure.CONFIG


def test_other_failures_keep_their_kind() -> None:
    assert trial_failure(MeasurementError("perf_analyzer failed"), SPEC)[1] == Failure.CONFIG
    assert trial_failure(ServerStartError("did not start"), SPEC)[1] == Failure.SERVER
    with pytest.raises(PermissionError):
        trial_failure(PermissionError(errno.EACCES, "denied"), SPEC)  # not a trial's failure


def test_perf_analyzers_missing_report_on_a_full_disk_is_enospc(tmp_path: Path) -> None:
    check_disk(tmp_path)  # this disk has room
    more_than_free = shutil.disk_usage(tmp_path).free + 1
    with pytest.raises(OSError) as raised:
        check_disk(tmp_path, min_free=more_than_free)
    assert raised.value.errno == errno.ENOSPC


def test_an_outcome_without_a_kind_is_a_config_failure() -> None:
    assert TrialOutcome(spec=SPEC, config_pbtxt="", error="refused").failure_kind == Failure.CONFIG
    assert TrialOutcome(spec=SPEC, config_pbtxt="", error="x", failure=Failure.WORKER).failure_kind == Failure.WORKER


@pytest.mark.parametrize(("niceness", "warned"), [(0, False), (15, True)])
def test_a_worker_at_a_niceness_above_0_says_its_figures_are_not_a_deployed_servers(niceness: int,
                                                                                   warned: bool) -> None:
    import subprocess
    import sys

    code = (f"import logging, os; logging.basicConfig(); os.nice({niceness}); "
            "from tuner.workers._worker import warn_if_niced; warn_if_niced()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert ("this worker runs at nice 15" in result.stderr) is warned, result.stderr
    assert ("RAY_worker_niceness=0" in result.stderr) is warned


def test_a_niceness_a_ray_worker_reports_is_warned_of_on_the_driver(caplog: pytest.LogCaptureFixture) -> None:
    from tuner.workers._worker import warn_if_niced

    warn_if_niced(15)  # as the pool does with what each Ray worker says when it starts
    warn_if_niced(0)
    assert [r.getMessage()[:27] for r in caplog.records] == ["this worker runs at nice 15"]
