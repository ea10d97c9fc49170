"""The tuner's exception tree.

    TunerError                  anything the tuner reports on purpose
    ├── ConfigError             a study file or command-line value is wrong (exit code 2)
    │   └── StudyLockedError    another driver runs the study (exit code 2, nothing touched)
    ├── ModelError              a model file is missing, unreadable or unsupported
    ├── ServerStartError        a Triton server did not start or became unreachable
    ├── ModelLoadError          Triton refused a model config (carries Triton's message)
    ├── MeasurementError        the load generator failed or did not produce results
    ├── StorageError            the study storage cannot be opened or read
    └── DiskFullError           a worker's disk is full: the study stops, the trial runs again later

Errors inside one trial (ModelLoadError, MeasurementError, a server that died mid-trial)
become a FAIL trial with the reason kept; errors outside a trial stop the study.
"""

from __future__ import annotations


class TunerError(Exception):
    """Base class of every error the tuner raises on purpose."""


class ConfigError(TunerError):
    """A study file or a command-line value is invalid."""


class ModelError(TunerError):
    """A model file is missing, unreadable or uses something the tuner cannot serve."""


class ServerStartError(TunerError):
    """A Triton server did not start, or stopped answering."""


class ModelLoadError(TunerError):
    """Triton refused to load a model config; the message is Triton's own."""


class MeasurementError(TunerError):
    """The load generator failed or produced no usable result."""


class StorageError(TunerError):
    """The study storage cannot be opened or does not hold what was asked for."""


class StudyLockedError(ConfigError):
    """Another driver holds the study's lease; the message names it (host, pid, since when)."""


class DiskFullError(TunerError):
    """A trial failed because a disk is full: no config is to blame, so the study stops."""
