"""Measurement with perf_analyzer, the standard Triton load generator.

The binary ships inside the ``tritonclient[all]==2.50.0`` wheel. It needs ``libb64.so.0d`` and
``libcudart.so.12``, which the nvidia-pytriton wheel bundles under mangled names: symlinks with
the plain names in a private folder on LD_LIBRARY_PATH are enough.

perf_analyzer measures in windows and accepts the result once the last three windows agree
within the stability percentage. When they never do, it writes no report; the tuner then
measures three windows once more, accepting whatever they spread, and marks the point unstable.
A screen (``LoadEngine.screen``) is such a run of three short windows from the start.

A window in which no request finished (a slow config, or a machine busy with something else)
makes perf_analyzer fail with "No valid requests recorded within time interval"; the tuner then
measures again with windows four times as long, twice at most, before the trial fails; where
the server answered its requests with an error, the run fails at once with that error. A run
that dies of a signal (its gRPC client aborts now and then) is run once more, and so is one that
could not find the model's version: right after a load, the versions a reload replaced retire in
the background, and perf_analyzer's look at an ensemble's composing models can fall in between.

With ``shared_memory: system`` perf_analyzer registers system shared memory regions with the
server (a restricted protocol: it sends the server's header) and passes the tensors through them;
each output's region holds one request's output (``output_region_bytes``). After each run the regions
it left registered, if any, are unregistered (``PerfAnalyzer._release_regions``).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import errno
import functools
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tuner.errors import MeasurementError
from tuner.measure._engine import EngineSettings, Measured, Probe, spread_pct
from tuner.model_info import ModelInfo
from tuner.trial import LoadPoint
from tuner.triton import Access, die_with_parent, redact, with_access

logger = logging.getLogger(__name__)

_UNSTABLE = "Failed to obtain stable measurement"
_EMPTY_WINDOW = "No valid requests recorded within time interval"
_NO_VERSION = "failed to find the requested model version"
#: How many times a window that held no finished request is made longer, and by what factor.
_LONGER_WINDOWS = 2
_LONGER_BY = 4
#: perf_analyzer calls windows stable when max/min <= 1 + percentage/100, on throughput and on latency.
#: With 1000 a window starved by another process (seen: 1384, 1208 and 117 infer/s) still failed
#: the fallback, and a config lost its trial to a disturbance; this accepts any spread.
_ANY_SPREAD_PCT = "1000000"
_PASS = re.compile(r"Pass \[\d+\] throughput: ([0-9.]+) infer/sec")
#: A request the server answered with an error: the config's, whatever the window.
_REQUEST_ERROR = re.compile(r"Thread \[\d+\] had error: (.+)")
#: perf_analyzer's share of its cores above which it, not the server, limits the load.
SATURATED_SHARE = 0.9
#: How many times the regions a run left are asked to be unregistered, 0.2 s apart (``_release_regions``).
_RELEASE_TRIES = 5
_REQUIRED_LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


def find_binary() -> Path:
    """The perf_analyzer binary of the running environment."""
    candidate = Path(sys.executable).parent / "perf_analyzer"
    found = candidate if candidate.is_file() else shutil.which("perf_analyzer")
    if not found:
        raise MeasurementError("perf_analyzer not found: install tritonclient[all]==2.50.0")
    return Path(found)


def library_dir(cache: Path) -> Path:
    """A folder of plainly named links to the libraries perf_analyzer needs."""
    from tuner.triton import pytriton_libs

    libs = pytriton_libs()
    cache.mkdir(parents=True, exist_ok=True)
    for plain, pattern in _REQUIRED_LIBS.items():
        matches = sorted(libs.glob(pattern))
        if not matches:
            raise MeasurementError(f"{plain} not found in {libs}: perf_analyzer cannot run")
        link = cache / plain
        if not link.exists():
            tmp = cache / f".{plain}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(matches[-1])
            tmp.replace(link)
    return cache


#: The shared memory region of an output whose size the model does not fix (a free dimension
#: other than the batch, or strings); a response that does not fit fails the measurement.
UNKNOWN_OUTPUT_BYTES = 64 << 20


def output_region_bytes(model: ModelInfo) -> int:
    """The bytes each output's shared memory region needs for a request of one item: the largest output's."""
    known = [size for t in model.outputs if (size := t.request_bytes) is not None]
    return max(known) if known and len(known) == len(model.outputs) else UNKNOWN_OUTPUT_BYTES


def shared_memory_args(mode: str, output_bytes: int) -> list[str]:
    """perf_analyzer's options for how the tensors reach the server: none where they travel in the
    requests, else the shared memory kind and each output's region."""
    if mode == "none":
        return []
    return ["--shared-memory", mode, "--output-shared-memory-size", str(output_bytes)]


def write_input_json(path: Path, requests: list[dict[str, np.ndarray]]) -> Path:
    """perf_analyzer's ``--input-data`` JSON of real samples, one entry per request (base64)."""
    data = [
        {
            name: {"b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode(), "shape": list(a.shape[1:])}
            for name, a in request.items()
        }
        for request in requests
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data}))
    return path


class PerfAnalyzer:
    """Runs perf_analyzer against one server; a LoadEngine (see tuner.measure._engine).

    Args:
        url: The server's endpoint for ``settings.protocol`` (host:port).
        workdir: Folder for report files and the library links.
        settings: Measurement settings.
        input_file: perf_analyzer's JSON of real input samples (see write_input_json), or None
            for ``settings.input_data``.
        access: The server's header (tuner.triton.TritonServer.access): perf_analyzer
            reads the model's config, a restricted protocol, before it sends any request.
    """

    def __init__(
        self,
        url: str,
        workdir: Path,
        settings: EngineSettings,
        input_file: Path | None = None,
        *,
        access: Access | None,
    ) -> None:
        self.url = url
        self.access = access
        self.workdir = workdir
        self.settings = settings
        self.input_data = str(input_file) if input_file else settings.input_data
        self.binary = find_binary()
        self.env = dict(os.environ)
        lib_path = str(library_dir(workdir / "lib"))
        self.env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib_path, self.env.get("LD_LIBRARY_PATH")) if p)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cpu_capacity_pct = 100.0 * cores

    def measure(self, model: str, concurrency: int, probe: Probe) -> Measured:
        """Runs perf_analyzer between two snapshots of the probe (see tuner.measure._engine).

        Raises:
            MeasurementError: perf_analyzer failed (its own message is kept).
        """
        return self._bracketed(probe, lambda: self.run(model, concurrency))

    def screen(self, model: str, concurrency: int, probe: Probe) -> Measured:
        """Three windows of ``screen_window_ms`` whatever their spread, between two snapshots of the probe.

        Raises:
            MeasurementError: perf_analyzer failed (its own message is kept).
        """
        window_ms = self.settings.screen_window_ms
        return self._bracketed(
            probe,
            lambda: dataclasses.replace(self._windows(model, concurrency, window_ms, any_three=True), stable=False),
        )

    def _bracketed(self, probe: Probe, run: Callable[[], LoadPoint]) -> Measured:
        """``run``'s point with the server statistics and CPU use between snapshots taken around it."""
        start = probe.snap_quiet()  # the load before this one may still be being counted
        point = run()
        server, usage = probe.between(start, probe.snap_quiet())
        saturated = usage.loadgen_cpu_pct >= SATURATED_SHARE * self.cpu_capacity_pct
        point = dataclasses.replace(point, **usage.as_point_fields(), loadgen_saturated=saturated)
        if server.steps:  # an ensemble: perf_analyzer's figures count its own queue only, not its steps'
            point = dataclasses.replace(point, server_queue_ms=server.as_point_fields()["server_queue_ms"])
        return Measured(point, server, usage, exact_window=False)

    def run(self, model: str, concurrency: int) -> LoadPoint:
        """Measures ``model`` at ``concurrency`` until the windows agree (see the module doc).

        Raises:
            MeasurementError: perf_analyzer failed (its own message is kept).
        """
        window_ms = self.settings.window_ms
        try:
            return self._windows(model, concurrency, window_ms)
        except _Unstable:
            logger.info(
                "%s at concurrency %d did not stabilise; measuring three windows as they come", model, concurrency
            )
            point = self._windows(model, concurrency, window_ms, any_three=True)
            return dataclasses.replace(point, stable=False)

    def _windows(self, model: str, concurrency: int, window_ms: int, any_three: bool = False) -> LoadPoint:
        """One perf_analyzer run with windows of ``window_ms``, made longer where one held no finished request."""
        for _ in range(_LONGER_WINDOWS):
            try:
                return self._run(model, concurrency, window_ms, any_three)
            except _EmptyWindow:
                logger.info(
                    "a %d ms window of %s at concurrency %d held no finished request; measuring with %d ms windows",
                    window_ms, model, concurrency, window_ms * _LONGER_BY,
                )  # fmt: skip
                window_ms *= _LONGER_BY
        try:
            return self._run(model, concurrency, window_ms, any_three)
        except _EmptyWindow as exc:
            raise MeasurementError(
                f"perf_analyzer: no request of {model} at concurrency {concurrency} finished within a {window_ms} ms window"
            ) from exc

    def _window_args(self, window_ms: int, any_three: bool = False) -> list[str]:
        """perf_analyzer's window options; ``any_three`` accepts the first three windows whatever their spread."""
        s = self.settings
        return [
            "--measurement-interval",
            str(window_ms),
            "--stability-percentage",
            _ANY_SPREAD_PCT if any_three else f"{s.stability_percentage:g}",
            "--max-trials",
            "3" if any_three else str(s.max_windows),
        ]

    def _run(self, model: str, concurrency: int, window_ms: int, any_three: bool) -> LoadPoint:
        csv_path = self.workdir / f"perf_{model}_c{concurrency}.csv"
        csv_path.unlink(missing_ok=True)
        # -v prints every window's throughput: their spread is kept with the point
        cmd = [
            str(self.binary),
            "-m",
            model,
            "-u",
            self.url,
            "-i",
            self.settings.protocol,
            "--concurrency-range",
            f"{concurrency}:{concurrency}",
            "--input-data",
            self.input_data,
            "-v",
            *self._window_args(window_ms, any_three),
            "-f",
            str(csv_path),
            "--verbose-csv",
            *shared_memory_args(self.settings.shared_memory, self.settings.output_bytes),
        ]
        if self.access is not None:
            cmd += self.access.perf_analyzer_args(self.settings.protocol)
        timeout = self._timeout_s(concurrency, window_ms)
        logger.debug("running %s", redact(" ".join(cmd), self.access))
        try:
            result = _invoke(cmd, self.env, timeout)
            transient = _transient(result)
            if transient:  # the load generator's or the moment's, not the config's
                error = _last_error(result.stdout + result.stderr)
                logger.warning("perf_analyzer %s measuring %s (%s); measuring again", transient, model, error)
                time.sleep(1.0)
                result = _invoke(cmd, self.env, timeout)
        finally:
            if self.settings.shared_memory == "system":
                self._release_regions()
        output = result.stdout + result.stderr
        if _UNSTABLE in output:
            raise _Unstable(output)
        refused = _REQUEST_ERROR.search(output)
        if refused and result.returncode != 0:  # a longer window would hold no answered request either
            raise MeasurementError(f"perf_analyzer: requests to {model} failed: {refused.group(1).strip()[:500]}")
        if _EMPTY_WINDOW in output:
            raise _EmptyWindow(output)
        if result.returncode != 0:
            check_disk(self.workdir)
            raise MeasurementError(f"perf_analyzer failed (exit {result.returncode}): {_last_error(output)}")
        try:
            text = csv_path.read_text()
        except OSError as exc:
            check_disk(self.workdir)
            raise MeasurementError(f"perf_analyzer wrote no report: {_last_error(output)}") from exc
        points = parse_csv(text)
        if not points:
            raise MeasurementError("perf_analyzer's report has no rows")
        passes = [float(m) for m in _PASS.findall(output)][-3:]
        return dataclasses.replace(points[0], throughput_spread_pct=spread_pct(passes)) if passes else points[0]

    def _release_regions(self) -> None:
        """Unregisters the system shared memory regions a run left on the server: those named as perf_analyzer
        names its own (the key is the name after a slash). perf_analyzer unregisters them as it exits, but the
        server (Triton 2.51) refuses to unregister a region a request still holds, which a loaded machine sees
        now and then, and a run that was killed never tries: the server would keep them mapped until the next
        run's start clears them."""
        client: triton_http.InferenceServerClient | triton_grpc.InferenceServerClient
        if self.settings.protocol == "http":
            client = with_access(triton_http.InferenceServerClient(self.url), self.access)
            status: Callable[[], dict | list] = client.get_system_shared_memory_status
        else:
            client = with_access(triton_grpc.InferenceServerClient(self.url), self.access)
            status = functools.partial(client.get_system_shared_memory_status, as_json=True)
        try:
            for attempt in range(1, _RELEASE_TRIES + 1):
                try:
                    for name in _perf_analyzer_regions(status()):
                        client.unregister_system_shared_memory(name)
                    return
                except (OSError, InferenceServerException) as exc:
                    if isinstance(exc, OSError) or "UNAVAILABLE" in str(exc.status()):  # gone, and its regions too
                        logger.debug("perf_analyzer's shared memory regions not released: %s", exc)
                        return
                    if attempt == _RELEASE_TRIES:
                        logger.warning("perf_analyzer's shared memory regions stay registered: %s", exc)
                    else:
                        time.sleep(0.2)
        finally:
            client.close()

    def _timeout_s(self, concurrency: int, window_ms: int) -> float:
        return 60.0 + 3 * window_ms / 1000 * (self.settings.max_windows + 2) + concurrency


#: Below this many free bytes a disk counts as full: perf_analyzer could not have written its report.
MIN_FREE_BYTES = 4 << 20


def check_disk(folder: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """Raises OSError(ENOSPC) where ``folder``'s disk is full.

    perf_analyzer says so only in its own words, if at all: the file system is asked instead,
    so that a full disk stops the study rather than failing configs (tuner.trial.Failure).
    """
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise OSError(errno.ENOSPC, f"no space left for perf_analyzer's report ({free} bytes free)", str(folder))


def _perf_analyzer_regions(status: dict | list) -> list[str]:
    """The names of the regions in a system shared memory status (gRPC's ``{"regions": {name: ...}}`` or
    HTTP's list) that perf_analyzer registered: it keys each region by its name after a slash."""
    regions = status.get("regions", {}).values() if isinstance(status, dict) else status
    return [r["name"] for r in regions if r.get("key") == "/" + r.get("name", "")]


def _invoke(cmd: list[str], env: dict[str, str] | None, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # a killed tuner must not leave it loading the machine
        )
    except subprocess.TimeoutExpired as exc:
        raise MeasurementError(f"perf_analyzer did not finish within {timeout:.0f} s") from exc


class _Unstable(MeasurementError):
    """perf_analyzer gave up: the windows never agreed."""


class _EmptyWindow(MeasurementError):
    """A window held no finished request."""


def _transient(result: subprocess.CompletedProcess[str]) -> str | None:
    """Why a failed run is worth one more, or None: it died of a signal (its gRPC client aborts now
    and then), or the model's version was not found while a reload's old versions retired."""
    if result.returncode < 0:
        return f"died of signal {-result.returncode}"
    if result.returncode != 0 and _NO_VERSION in result.stdout + result.stderr:
        return "found no version of a model"
    return None


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return (errors or lines or ["no output"])[-1][:500]


_US = 1000.0  # perf_analyzer reports microseconds; LoadPoint holds milliseconds


def parse_csv(text: str) -> list[LoadPoint]:
    """Parses the report of ``perf_analyzer -f FILE --verbose-csv``.

    Each row is one concurrency. Latencies come in microseconds and are returned in
    milliseconds. Columns that a perf_analyzer version does not write are left at 0.

    Raises:
        MeasurementError: a required column is missing or a value is not a number.
    """
    reader = csv.DictReader(io.StringIO(text.strip()))
    if reader.fieldnames is not None and "Concurrency" not in reader.fieldnames:
        raise MeasurementError("perf_analyzer report lacks column 'Concurrency'")
    points = []
    for row in reader:
        if not any(row.values()):
            continue
        try:
            points.append(_row_to_point(row))
        except KeyError as exc:
            raise MeasurementError(f"perf_analyzer report lacks column {exc}") from exc
        except (TypeError, ValueError) as exc:  # TypeError: a short row leaves None values
            raise MeasurementError(f"perf_analyzer report has a bad value: {exc}") from exc
    return points


def _row_to_point(row: dict[str, str]) -> LoadPoint:
    def ms(column: str, required: bool = True) -> float:
        value = row[column] if required else row.get(column) or "0"
        return float(value) / _US

    return LoadPoint(
        concurrency=int(row["Concurrency"]),
        throughput=float(row["Inferences/Second"]),
        latency_avg_ms=ms("Avg latency"),
        latency_p50_ms=ms("p50 latency"),
        latency_p90_ms=ms("p90 latency"),
        latency_p95_ms=ms("p95 latency"),
        latency_p99_ms=ms("p99 latency"),
        client_send_ms=ms("Client Send", required=False),
        client_recv_ms=ms("Client Recv", required=False),
        server_queue_ms=ms("Server Queue", required=False),
        server_compute_input_ms=ms("Server Compute Input", required=False),
        server_compute_infer_ms=ms("Server Compute Infer", required=False),
        server_compute_output_ms=ms("Server Compute Output", required=False),
    )
