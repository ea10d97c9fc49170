"""Exit codes by cause: each error class's code (the one table, tuner/errors.py) and main() using it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tuner.cli import _commands as cli
from tuner.errors import (
    ConfigError,
    DiskFullError,
    ExitCode,
    LeaseLostError,
    MeasurementError,
    ModelError,
    ModelLoadError,
    ServerStartError,
    StorageError,
    StudyLockedError,
    StudyNotFoundError,
    TunerError,
    VariantError,
)
from tuner.reports._verify import NoFeasibleConfigError

INPUT = [ConfigError, StudyLockedError, LeaseLostError, ModelError, VariantError, StudyNotFoundError, NoFeasibleConfigError]
ENVIRONMENT = [ServerStartError, ModelLoadError, MeasurementError, StorageError, DiskFullError, TunerError]


def test_the_codes_are_the_documented_ones() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 130, 143]


@pytest.mark.parametrize("error", INPUT, ids=lambda e: e.__name__)
def test_the_users_input_is_2(error: type[TunerError]) -> None:
    assert error("x").exit_code == ExitCode.INPUT == 2


@pytest.mark.parametrize("error", ENVIRONMENT, ids=lambda e: e.__name__)
def test_the_environment_is_3(error: type[TunerError]) -> None:
    assert error("x").exit_code == ExitCode.ENVIRONMENT == 3


def test_every_error_class_is_in_one_of_the_lists() -> None:
    def subclasses(cls: type[TunerError]) -> set[type[TunerError]]:
        found = {cls}
        for sub in cls.__subclasses__():
            found |= subclasses(sub)
        return found

    tuner_errors = {cls for cls in subclasses(TunerError) if cls.__module__.startswith("tuner.")}
    private = {cls for cls in tuner_errors if cls.__name__.startswith("_")}  # a module's own, in one trial
    assert tuner_errors - private == set(INPUT) | set(ENVIRONMENT)


@pytest.fixture
def run_main(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Runs ``tuner ARGS`` in this process through main(), returning its exit code.

    main() installs its own SIGINT and SIGTERM handlers: they are put back after.
    """
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(*args: str) -> object:
        monkeypatch.setattr(sys, "argv", ["tuner", *args])
        with pytest.raises(SystemExit) as exited:
            cli.main()
        return exited.value.code

    yield run
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_server_that_cannot_start_exits_3(tmp_path: Path, digits_onnx: Path, run_main,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "tritonserver"
    binary.write_text("not a program\n")  # a file, so the study file is valid, but not an executable one
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "study": "no-server",
        "model": {"name": "digits_forest", "path": str(digits_onnx)},
        "search": {"n_trials": 1, "space": {"instance_count": {"low": 1, "high": 2}}},
        "workers": {"backend": "local"},
        "server": {"launch": "local", "binary": str(binary)},
    }))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    assert run_main("optimize", str(study)) == ExitCode.ENVIRONMENT
    assert f"error: cannot run {binary}" in capsys.readouterr().err


def test_bad_input_and_usage_errors_exit_2(tmp_path: Path, run_main, capsys: pytest.CaptureFixture) -> None:
    assert run_main("optimize", str(tmp_path / "nope.yaml")) == ExitCode.INPUT
    assert "error: cannot read study file" in capsys.readouterr().err
    assert run_main("show", "s", "--nope") == ExitCode.INPUT
    assert run_main("show", "s", "--storage", f"sqlite:///{tmp_path / 'none.db'}") == ExitCode.INPUT
    assert "no study database" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_a_study_s_loop_says_so_and_exits_by_the_signal(
    tmp_path: Path, run_main, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, signum: int
) -> None:
    """Typer turns the KeyboardInterrupt that leaves a command into exit code 130 whatever the signal."""
    from tuner.cli import _app, _study_commands

    monkeypatch.setattr(_app, "_stopped_by", [signal.SIGINT])

    def interrupted(cfg: object) -> None:  # the signal comes while the study is being planned
        if signum == signal.SIGTERM:
            _app.stop_on_sigterm(signum, None)
        raise KeyboardInterrupt

    monkeypatch.setattr(_study_commands, "_preflight", interrupted)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"study": "s", "model": {"name": "m", "path": str(tmp_path / "m.onnx")}}))
    (tmp_path / "m.onnx").write_bytes(b"")

    code = run_main("optimize", str(study))

    assert code == (ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED)
    assert capsys.readouterr().err.strip() == "interrupted"
    from tuner import interrupts

    assert not interrupts._requested.is_set(), "the stop outlived its command: the next study in the process would stop"
