"""Upper bounds on every size, count and time in the study file, each with the reason for it.

The bounds come from general facts about Triton, the load generators, Optuna and the machines,
not from the bundled models: they are far above anything a real study needs, and low enough
that a posted study file cannot make the tuner reserve a million workers, send a 2 GiB request
or wait forever. Floats are finite everywhere (``_Strict`` sets ``allow_inf_nan=False``).
"""

from __future__ import annotations

from typing import Final

#: Study and model names become file and folder names (``studies/NAME.yaml``,
#: ``NAME-report.html``, ``WORK/NAME/worker-0``, the Triton model folder); a file name holds
#: 255 bytes on Linux file systems, and Optuna's ``study_name`` and the tuner's own
#: ``study_name`` columns hold 512 characters. 100 leaves room for the suffixes.
MAX_NAME_LENGTH: Final = 100

#: Seconds in a week: the longest any timeout may be (a server start, a trial, a whole study).
#: Longer is a typo or infinity in disguise; a study that really runs longer is resumed.
MAX_TIMEOUT_S: Final = 7 * 24 * 3600

#: Workers of one study. Each is one Triton server with three ports, its own model repository
#: and a Ray actor: 256 is 32 machines of 8 GPUs.
MAX_WORKERS: Final = 256

#: Cores one worker may have. A worker runs on one machine, and the largest two-socket
#: servers have fewer than 1024 hardware threads. Also the most threads one instance may use.
MAX_CPUS_PER_WORKER: Final = 1024

#: GPUs one worker may have: a worker's Triton runs on one machine, which holds at most 16.
MAX_GPUS_PER_WORKER: Final = 16

#: Model instances in one Triton server. Each is a full copy of the model with its own
#: threads and (on a GPU) its own memory; no machine runs more usefully.
MAX_INSTANCES: Final = 128

#: Requests in flight from the load generator to one server. perf_analyzer and the builtin
#: engine hold one input buffer and one outstanding request per slot; far past where a
#: single server's queue only adds latency.
MAX_CONCURRENCY: Final = 1024

#: Concurrencies measured per trial: each is a full measurement of several windows.
MAX_CONCURRENCY_LEVELS: Final = 64

#: Triton's ``max_batch_size``. The load sends one sample per request, so the dynamic batcher
#: never forms a batch larger than the requests in flight.
MAX_BATCH_SIZE: Final = MAX_CONCURRENCY

#: Dynamic batching's queue delay, in microseconds (10 s): every request may wait this long,
#: which no latency budget survives.
MAX_QUEUE_DELAY_US: Final = 10_000_000

#: Values of one searched knob (a range's steps or a list's choices). The bo and grid samplers
#: enumerate every value, and the grid of all knobs together is capped at 100,000 configs.
MAX_KNOB_VALUES: Final = 10_000

#: Trials of one study. A trial takes seconds to minutes (so 10,000 is days), and Optuna's
#: model-based samplers slow down with every trial they learn from.
MAX_TRIALS: Final = 10_000

#: Studies a new study starts from (``search.warm_start.from``): each is read whole, every trial, when
#: the study is set up, so a long list is seconds of reading before the first trial; 100 is far more
#: than the machines, model versions or models a study has any use learning from.
MAX_TRANSFER_STUDIES: Final = 100

#: Seeds: Optuna's samplers seed numpy's RandomState, which takes 0 to 2**32 - 1.
MAX_SEED: Final = 2**32 - 1

#: One measurement window, in ms (an hour): three windows must agree before a trial is kept.
MAX_WINDOW_MS: Final = 3_600_000

#: Windows per measurement before it is taken as unstable.
MAX_WINDOWS: Final = 1000

#: Warm-up requests per concurrency slot after every load.
MAX_WARMUP_REQUESTS: Final = 10_000

#: ``concurrency_search.min_gain_pct``: doubling the concurrency at most doubles throughput
#: (+100 %), so a higher threshold would stop at the first step.
MAX_GAIN_PCT: Final = 100

#: Bisection steps of the concurrency search: [1, MAX_CONCURRENCY] is narrowed to one
#: concurrency in log2(1024) = 10.
MAX_REFINE_STEPS: Final = 20

#: ``contamination_cpu_pct`` is in percent of one core: at most all cores of a worker's machine.
MAX_CPU_PCT: Final = 100 * MAX_CPUS_PER_WORKER

#: Measurements of one window again after other processes used the CPU.
MAX_RETRIES: Final = 10

#: Fresh loads of one config (``remeasure.max_loads_per_config``): each is a full measurement,
#: and configs that tie within noise are told apart by a few.
MAX_REMEASURE: Final = 100

#: Fresh loads after the search (``remeasure.loads``): each is a full measurement, as a trial is.
MAX_REMEASURE_LOADS: Final = MAX_TRIALS

#: Inputs of one model (models with key-value caches have two per layer, a few hundred).
MAX_INPUTS: Final = 1024
#: Composing models of an ensemble a study tunes together (each adds its knobs to the space).
MAX_STEPS: Final = 64

#: Dimensions of one input: numpy (which tritonclient 2.50 pins below 2.0) holds at most 32.
MAX_RANK: Final = 32

#: Bytes of one sample of all inputs together, which is one request: Triton's gRPC messages are
#: capped at 2 GiB by protobuf, and the load generator holds one per slot.
MAX_REQUEST_BYTES: Final = 1 << 30
