"""The tuner's exception tree, and the exit code of each kind of error.

    TunerError                  anything the tuner reports on purpose                          exit code
    ├── ConfigError             a study file or command-line value is wrong                    2 input
    │   └── StudyLockedError    another driver runs the study (nothing touched)                2 input
    │       └── LeaseLostError  another driver took the study over or deleted it (run stopped)  2 input
    ├── ModelError              a model file is missing, unreadable or unsupported             2 input
    │   └── VariantError        the model has no variant of a precision (every config of it)   2 input
    ├── ServerStartError        a Triton server did not start or became unreachable            3 environment
    ├── ModelLoadError          Triton refused a model config (carries Triton's message)       3 environment
    ├── MeasurementError        the load generator failed or did not produce results           3 environment
    ├── StorageError            the study storage cannot be opened or read                     3 environment
    │   └── StudyNotFoundError  no study (or trial) of the name (or number) asked for          2 input
    └── DiskFullError           a worker's disk is full: the study stops, the trial runs again 3 environment

Errors inside one trial (ModelLoadError, MeasurementError, a server that died mid-trial)
become a FAIL trial with the reason kept; errors outside a trial stop the study, and the CLI
exits with the error's ``exit_code`` (``ExitCode``), so a script or the API can tell a file to
fix (2) from a machine to fix (3) without reading the message.
"""

from __future__ import annotations

import enum
import signal
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """The `tuner` command's exit codes, by cause."""

    #: Done; `tuner verify`: the config holds.
    OK = 0
    #: `tuner verify` only: the config measured worse than stored.
    DOES_NOT_HOLD = 1
    #: The user's input: the study file, a model file, a command-line value, a study name, a study another
    #: tuner runs. Running it again unchanged fails the same way.
    INPUT = 2
    #: The environment: a Triton server, the storage, perf_analyzer, a full disk, Ray. The input may be
    #: fine; running it again once the machine is fixed may succeed.
    ENVIRONMENT = 3
    #: Ctrl-C (128 + SIGINT), after the study was left intact.
    INTERRUPTED = 128 + signal.SIGINT
    #: SIGTERM (128 + SIGTERM), after the study was left intact, as for Ctrl-C.
    TERMINATED = 128 + signal.SIGTERM


class TunerError(Exception):
    """Base class of every error the tuner raises on purpose.

    Attributes:
        exit_code: The CLI's exit code for this kind of error. A plain TunerError (Ray that cannot
            be started or joined) is the environment's.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.ENVIRONMENT


class ConfigError(TunerError):
    """A study file or a command-line value is invalid."""

    exit_code = ExitCode.INPUT


class ModelError(TunerError):
    """A model file is missing, unreadable or uses something the tuner cannot serve.

    The user's input: the file the study names, its ``model.inputs``, its validation data, or a
    precision the model has no variant for.
    """

    exit_code = ExitCode.INPUT


class VariantError(ModelError):
    """The model has no variant of a precision: a converter or quantizer cannot make one that ONNX
    Runtime runs. It is the model file's and the precision's, so every config of that precision
    fails the same way (a FAIL trial, ``Failure.VARIANT``); no other config is to blame."""


class ServerStartError(TunerError):
    """A Triton server did not start, or stopped answering."""

    exit_code = ExitCode.ENVIRONMENT


class ModelLoadError(TunerError):
    """Triton refused to load a model config; the message is Triton's own.

    Within a study it is a FAIL trial. It stops a command only where the config has loaded before
    (``tuner verify`` of a measured config), so the server, not the config, has changed.
    """

    exit_code = ExitCode.ENVIRONMENT


class MeasurementError(TunerError):
    """The load generator failed or produced no usable result (perf_analyzer missing, say)."""

    exit_code = ExitCode.ENVIRONMENT


class StorageError(TunerError):
    """The study storage cannot be opened or does not hold what was asked for."""

    exit_code = ExitCode.ENVIRONMENT


class StudyNotFoundError(StorageError):
    """The storage holds no study (or trial) of the name (or number) asked for.

    The storage answered: the name (or the storage file) the user gave is wrong.
    """

    exit_code = ExitCode.INPUT


class StudyLockedError(ConfigError):
    """Another driver holds the study's lease; the message names it (host, pid, since when)."""


class LeaseLostError(StudyLockedError):
    """Another driver took over the lease of the study this run drives, or the study was deleted under
    it: the run stops without writing more (its trials in flight are the new driver's to run again)."""


class DiskFullError(TunerError):
    """A trial failed because a disk is full: no config is to blame, so the study stops."""

    exit_code = ExitCode.ENVIRONMENT
