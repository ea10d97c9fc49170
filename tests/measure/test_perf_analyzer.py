from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tuner.errors import MeasurementError
from tuner.measure import EngineSettings
from tuner.measure._perf_analyzer import PerfAnalyzer, _perf_analyzer_regions, _transient, parse_csv
from tuner.trial import LoadPoint

HEADER = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
    "Avg latency,request/response,response wait"
)
#: Captured from perf_analyzer 2.50 (``-f out.csv --verbose-csv``).
REPORT = HEADER + "\n4,2227.36,2,245,993,29,291,227,1,1751,1972,2057,2339,1791,3,1778\n"


def _drop_column(text: str, column: str) -> str:
    rows = [line.split(",") for line in text.strip().splitlines()]
    index = rows[0].index(column)
    return "\n".join(",".join(r[:index] + r[index + 1:]) for r in rows) + "\n"


def test_real_report_converts_microseconds_to_milliseconds() -> None:
    points = parse_csv(REPORT)

    assert points == [
        LoadPoint(
            concurrency=4,
            throughput=2227.36,
            latency_avg_ms=1.791,
            latency_p50_ms=1.751,
            latency_p90_ms=1.972,
            latency_p95_ms=2.057,
            latency_p99_ms=2.339,
            client_send_ms=0.002,
            client_recv_ms=0.001,
            server_queue_ms=0.993,
            server_compute_input_ms=0.029,
            server_compute_infer_ms=0.291,
            server_compute_output_ms=0.227,
            stable=True,
        )
    ]


def test_field_types() -> None:
    (point,) = parse_csv(REPORT)

    assert isinstance(point.concurrency, int)
    assert point.throughput == pytest.approx(2227.36)  # not scaled: it is already per second
    assert point.latency_p99_ms == pytest.approx(2.339)


def test_several_rows_in_order() -> None:
    text = REPORT + "8,3100.5,3,250,2000,30,300,230,2,2500,2900,3000,3500,2600,3,2550\n"

    points = parse_csv(text)

    assert [p.concurrency for p in points] == [4, 8]
    assert points[1].throughput == pytest.approx(3100.5)
    assert points[1].latency_p99_ms == pytest.approx(3.5)
    assert points[1].server_queue_ms == pytest.approx(2.0)


def test_blank_lines_and_surrounding_whitespace_are_ignored() -> None:
    assert parse_csv("\n\n" + REPORT + "\n\n") == parse_csv(REPORT)


def test_header_only_gives_no_points() -> None:
    assert parse_csv(HEADER + "\n") == []


def test_empty_text_gives_no_points() -> None:
    assert parse_csv("") == []


@pytest.mark.parametrize("column", ["Inferences/Second", "p99 latency", "Avg latency", "p50 latency"])
def test_missing_required_column(column: str) -> None:
    with pytest.raises(MeasurementError, match="lacks column") as info:
        parse_csv(_drop_column(REPORT, column))

    assert column in str(info.value)


@pytest.mark.parametrize("value", ["abc", "", "1.2.3"])
def test_non_numeric_value(value: str) -> None:
    text = REPORT.replace(",2339,", f",{value},")

    with pytest.raises(MeasurementError, match="bad value"):
        parse_csv(text)


def test_non_numeric_throughput() -> None:
    with pytest.raises(MeasurementError):
        parse_csv(REPORT.replace("2227.36", "n/a"))


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("Server Queue", "server_queue_ms"),
        ("Client Send", "client_send_ms"),
        ("Client Recv", "client_recv_ms"),
        ("Server Compute Input", "server_compute_input_ms"),
        ("Server Compute Infer", "server_compute_infer_ms"),
        ("Server Compute Output", "server_compute_output_ms"),
    ],
)
def test_missing_optional_column_gives_zero(column: str, field: str) -> None:
    (full,) = parse_csv(REPORT)
    (point,) = parse_csv(_drop_column(REPORT, column))

    assert getattr(full, field) > 0
    assert getattr(point, field) == 0.0
    assert point.latency_p99_ms == full.latency_p99_ms


def test_only_required_columns() -> None:
    text = (
        "Concurrency,Inferences/Second,p50 latency,p90 latency,p95 latency,p99 latency,Avg latency\n"
        "1,10,1000,2000,3000,4000,1500\n"
    )

    (point,) = parse_csv(text)

    assert point == LoadPoint(1, 10.0, 1.5, 1.0, 2.0, 3.0, 4.0)


def test_empty_optional_value_gives_zero() -> None:
    (point,) = parse_csv(REPORT.replace(",993,", ",,"))

    assert point.server_queue_ms == 0.0


def test_truncated_row_raises_measurement_error() -> None:
    with pytest.raises(MeasurementError):
        parse_csv(HEADER + "\n4,2227.36,2,245\n")


# --- which failed runs are run once more --------------------------------------------------------


def _run(returncode: int, output: str) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["perf_analyzer"], returncode, stdout=output, stderr="")


@pytest.mark.parametrize(
    ("returncode", "output", "reason"),
    [
        (-6, "terminate called after throwing an instance of 'std::system_error'", "died of signal 6"),
        (99, "error: failed to find the requested model version", "found no version of a model"),
        (99, "error: failed to get model metadata: Request for unknown model", None),  # a model never loaded
        (1, "Failed to obtain stable measurement within 10 measurement windows", None),  # handled on its own
        (0, "failed to find the requested model version", None),  # a run that succeeded
    ],
)
def test_a_run_is_measured_again_only_where_the_moment_failed_it(
    returncode: int, output: str, reason: str | None
) -> None:
    assert _transient(_run(returncode, output)) == reason


#: Captured from perf_analyzer 2.50: the text recognizer's output did not fit a 1000-byte region.
REFUSED = """Request concurrency: 2
  Pass [1] cb::Error: No valid requests recorded within time interval. Please use a larger time window.
Failed to maintain requested inference load. Worker thread(s) failed to generate concurrent requests.
Thread [0] had error: shared memory size specified with the request for output 'softmax_11.tmp_0' (1000 bytes) \
should be at least 1060000 bytes to hold the results
"""


def test_requests_the_server_refused_fail_the_run_at_once_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import tuner.measure._perf_analyzer as perf
    from tuner.measure import EngineSettings

    calls = []
    monkeypatch.setattr(perf, "_invoke", lambda cmd, env, timeout: calls.append(cmd) or _run(99, REFUSED))
    engine = perf.PerfAnalyzer("127.0.0.1:1", tmp_path, EngineSettings(window_ms=500), access=None)
    with pytest.raises(MeasurementError, match=r"requests to m failed: shared memory size .* at least 1060000 bytes"):
        engine.run("m", 2)
    assert len(calls) == 1  # not again with longer windows: they would hold no answered request either


def test_perf_analyzers_regions_are_those_keyed_by_their_name_in_either_protocols_status() -> None:
    grpc = {"regions": {"x": {"name": "x", "key": "/x"}, "theirs": {"name": "theirs", "key": "/elsewhere"}}}
    http = [{"name": "y", "key": "/y", "byte_size": 8}, {"name": "z", "key": "z"}]
    assert _perf_analyzer_regions(grpc) == ["x"]
    assert _perf_analyzer_regions(http) == ["y"]
    assert _perf_analyzer_regions({}) == [] and _perf_analyzer_regions([]) == []


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_releasing_the_regions_of_a_server_that_is_gone_neither_raises_nor_waits(tmp_path: Path, protocol: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = EngineSettings(shared_memory="system", output_bytes=64, protocol=protocol)
    engine = PerfAnalyzer(f"127.0.0.1:{port}", tmp_path, settings, access=None)
    started = time.perf_counter()
    engine._release_regions()
    assert time.perf_counter() - started < 0.5, "a server that is gone is not asked again"
