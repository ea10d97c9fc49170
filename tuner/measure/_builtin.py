"""The builtin load engine: ``concurrency`` requests in flight from one asyncio loop over gRPC.

For where perf_analyzer cannot run. It follows perf_analyzer's rules: windows of
``window_ms``; the result is accepted once the last three windows' throughput and mean latency
each lie within ``stability_percentage`` of their mean; after ``max_windows`` the last three are
reported and the point is marked unstable. Percentiles pool the latencies of the three windows.
A screen is three windows of ``screen_window_ms`` reported whatever their spread.

Each window stops sending at its end and waits for the requests in flight: the server is idle
at every window boundary, so the server statistics taken there count exactly the requests the
reported windows sent (see tuner.measure._engine).

Client time is split as perf_analyzer splits it: ``client_send_ms`` builds and serializes the
request, ``client_recv_ms`` decodes the response; the rest of the latency is the wait for the
response. The loop's own CPU time tells whether the engine was the bottleneck: above 90% of a
core the point is marked ``loadgen_saturated``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from tuner.errors import MeasurementError
from tuner.measure._engine import EngineSettings, Measured, Probe, spread_pct
from tuner.model_info import ModelInfo
from tuner.trial import LoadPoint
from tuner.triton import Access, with_access

logger = logging.getLogger(__name__)

#: Loop CPU, in percent of one core, above which the engine itself limits the load.
SATURATED_PCT = 90.0
_RANDOM_SAMPLES = 16


@dataclass
class _Window:
    seconds: float
    latencies_s: list[float]
    send_s: list[float]
    recv_s: list[float]
    loop_cpu_s: float

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds > 0 else 0.0

    @property
    def latency_avg_s(self) -> float:
        return float(np.mean(self.latencies_s)) if self.latencies_s else 0.0


def request_samples(
    model: ModelInfo, input_data: str, samples: dict[str, np.ndarray] | None, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """One array per input for each request to cycle through, each with a batch of one.

    Real ``samples`` (by input name, samples on the first axis) where given, else random or
    zero data of each input's type and shape.
    """
    rng = np.random.default_rng(seed)
    if samples:
        count = min(len(a) for a in samples.values())
        return [{name: _batch_of_one(model, name, a[i : i + 1]) for name, a in samples.items()} for i in range(count)]
    requests = []
    for _ in range(1 if input_data == "zero" else _RANDOM_SAMPLES):
        request = {}
        for tensor in model.inputs:
            shape = [1, *(d if d > 0 else 1 for d in tensor.item_shape)] if tensor.item_shape else [1, 1]
            dtype = np.dtype(triton_to_np_dtype(tensor.dtype))
            if input_data == "zero":
                data = np.zeros(shape, dtype=dtype)
            elif dtype.kind == "f":
                data = rng.random(shape).astype(dtype)
            else:
                data = rng.integers(0, 2 if dtype.kind == "b" else 8, size=shape).astype(dtype)
            request[tensor.name] = data
        requests.append(request)
    return requests


def _batch_of_one(model: ModelInfo, name: str, sample: np.ndarray) -> np.ndarray:
    tensor = next(t for t in model.inputs if t.name == name)
    return sample.reshape(1, 1) if not tensor.item_shape else np.ascontiguousarray(sample)


class BuiltinEngine:
    """Measures with asyncio and ``tritonclient.grpc.aio`` (see the module doc).

    Args:
        url: The server's gRPC endpoint (host:port).
        settings: Window length, stability rule, input data.
        model: The model's inputs and outputs.
        samples: Real input samples by input name, or None for ``settings.input_data``.
        access: The server's header (tuner.triton.TritonServer.access), sent with each request.
    """

    def __init__(
        self,
        url: str,
        settings: EngineSettings,
        model: ModelInfo,
        samples: dict[str, np.ndarray] | None = None,
        access: Access | None = None,
    ) -> None:
        self.url = url
        self.access = access
        self.settings = settings
        self.model = model
        self._requests = request_samples(model, settings.input_data, samples)
        self._dtypes = {t.name: t.dtype for t in model.inputs}
        self._outputs = [t.name for t in model.outputs]

    def measure(self, model: str, concurrency: int, probe: Probe) -> Measured:
        """Measures ``model`` at ``concurrency`` until three windows agree.

        Raises:
            MeasurementError: the server answered a request with an error.
        """
        return asyncio.run(self._measure(model, concurrency, probe, screen=False))

    def screen(self, model: str, concurrency: int, probe: Probe) -> Measured:
        """Measures three windows of ``screen_window_ms``, whatever their spread (point not stable).

        Raises:
            MeasurementError: the server answered a request with an error.
        """
        return asyncio.run(self._measure(model, concurrency, probe, screen=True))

    async def _measure(self, model: str, concurrency: int, probe: Probe, screen: bool) -> Measured:
        client = with_access(triton_aio.InferenceServerClient(self.url), self.access)
        window_ms = self.settings.screen_window_ms if screen else self.settings.window_ms
        try:
            snaps = [probe.snap_quiet()]  # the load before this one may still be being counted
            windows: list[_Window] = []
            for _ in range(3 if screen else self.settings.max_windows):
                windows.append(await self._window(client, model, concurrency, window_ms))
                snaps.append(probe.snap_after(snaps[-1], len(windows[-1].latencies_s)))
                if not screen and len(windows) >= 3 and self._agree(windows[-3:]):
                    break
        except InferenceServerException as exc:
            raise MeasurementError(f"request failed: {exc.message() or exc}") from exc
        finally:
            await client.close()
        last = windows[-3:]
        server, usage = probe.between(snaps[-len(last) - 1], snaps[-1])
        stable = not screen and len(windows) >= 3 and self._agree(last)
        point = self._point(concurrency, last, stable=stable)
        loop_pct = 100.0 * sum(w.loop_cpu_s for w in last) / sum(w.seconds for w in last)
        point = dataclasses.replace(
            point,
            **server.as_point_fields(),
            **usage.as_point_fields(),
            loadgen_saturated=loop_pct >= SATURATED_PCT,
        )
        return Measured(point, server, usage, exact_window=True, requests=sum(len(w.latencies_s) for w in last))

    def _agree(self, windows: list[_Window]) -> bool:
        limit = self.settings.stability_percentage / 100.0
        for values in ([w.throughput for w in windows], [w.latency_avg_s for w in windows]):
            mean = float(np.mean(values))
            if mean <= 0 or any(abs(v - mean) / mean > limit for v in values):
                return False
        return True

    async def _window(
        self, client: triton_aio.InferenceServerClient, model: str, concurrency: int, window_ms: int
    ) -> _Window:
        latencies: list[float] = []
        send: list[float] = []
        recv: list[float] = []
        started = time.perf_counter()
        cpu_started = time.thread_time()
        deadline = started + window_ms / 1000.0

        async def slot(index: int) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                inputs = self._inputs(index)
                t1 = time.perf_counter()
                result = await client.infer(model, inputs, client_timeout=120.0)
                t2 = time.perf_counter()
                for name in self._outputs:
                    result.as_numpy(name)
                t3 = time.perf_counter()
                latencies.append(t3 - t0)
                send.append(t1 - t0)
                recv.append(t3 - t2)
                index += concurrency

        await asyncio.gather(*(slot(i) for i in range(concurrency)))
        return _Window(time.perf_counter() - started, latencies, send, recv, time.thread_time() - cpu_started)

    def _inputs(self, index: int) -> list[triton_grpc.InferInput]:
        arrays = self._requests[index % len(self._requests)]
        inputs = []
        for name, array in arrays.items():
            request = triton_grpc.InferInput(name, list(array.shape), self._dtypes[name])
            request.set_data_from_numpy(array)
            inputs.append(request)
        return inputs

    def _point(self, concurrency: int, windows: list[_Window], stable: bool) -> LoadPoint:
        latencies = np.array([x for w in windows for x in w.latencies_s]) * 1000.0
        if latencies.size == 0:
            raise MeasurementError(f"no request completed at concurrency {concurrency}")
        p50, p90, p95, p99 = np.percentile(latencies, [50, 90, 95, 99])
        seconds = sum(w.seconds for w in windows)
        return LoadPoint(
            concurrency=concurrency,
            throughput=latencies.size / seconds,
            latency_avg_ms=float(latencies.mean()),
            latency_p50_ms=float(p50),
            latency_p90_ms=float(p90),
            latency_p95_ms=float(p95),
            latency_p99_ms=float(p99),
            client_send_ms=1000.0 * float(np.mean([x for w in windows for x in w.send_s])),
            client_recv_ms=1000.0 * float(np.mean([x for w in windows for x in w.recv_s])),
            throughput_spread_pct=spread_pct([w.throughput for w in windows]),
            stable=stable,
        )
