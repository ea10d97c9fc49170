"""scripts/setup.sh: which ONNX Runtime build it installs, picked without installing anything.

The script, sourced, only defines its functions; these tests call them in bash with a PATH made
for each case: a fake ``nvidia-smi`` (no GPU can be had here) beside the few real programs they use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"
BASH = shutil.which("bash") or "/bin/bash"
#: What the picking functions run besides nvidia-smi.
TOOLS = ("grep", "timeout")

H200 = "GPU 0: NVIDIA H200 (UUID: GPU-5c6b1a2e-0000-0000-0000-000000000000)"
NO_DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."


def _bin(tmp_path: Path, nvidia_smi: str | None) -> Path:
    """A folder for PATH: the real tools, and an nvidia-smi script where given (none on PATH otherwise)."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (folder / tool).symlink_to(found)
    if nvidia_smi is not None:
        script = folder / "nvidia-smi"
        script.write_text(f"#!{BASH}\n{nvidia_smi}\n")
        script.chmod(0o755)
    return folder


def _run(tmp_path: Path, call: str, nvidia_smi: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``call`` after sourcing the script, with only the variables given (and PATH)."""
    environment = {"PATH": str(_bin(tmp_path, nvidia_smi)), **env}
    return subprocess.run(
        [BASH, "-c", f'. "{SETUP}" && {call}'], env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def _build(tmp_path: Path, nvidia_smi: str | None = None, **env: str) -> str:
    done = _run(tmp_path, "ort_build", nvidia_smi, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("nvidia_smi", "expected"),
    [
        (f"echo '{H200}'", "gpu nvidia-smi lists a GPU"),
        (f"echo '{H200}'; echo '{H200.replace('GPU 0', 'GPU 1')}'", "gpu nvidia-smi lists a GPU"),
        (f"echo '{NO_DRIVER}'; exit 9", "cpu nvidia-smi lists no GPU"),  # a driver that cannot be reached
        ("exit 0", "cpu nvidia-smi lists no GPU"),  # a driver and no GPU
        (None, "cpu nvidia-smi lists no GPU"),  # no NVIDIA driver at all
    ],
)
def test_the_build_follows_the_gpus_nvidia_smi_lists(tmp_path: Path, nvidia_smi: str | None, expected: str) -> None:
    assert _build(tmp_path, nvidia_smi) == expected


def test_a_listed_gpu_makes_nvidia_smi_asked_with_the_list_flag(tmp_path: Path) -> None:
    asked = tmp_path / "asked"
    assert _build(tmp_path, f'echo "$@" > {asked}; echo \'{H200}\'').startswith("gpu ")
    assert asked.read_text().split() == ["-L"]


def test_ort_build_and_extras_override_the_pick(tmp_path: Path) -> None:
    gpu = f"echo '{H200}'"
    assert _build(tmp_path / "a", gpu, ORT_BUILD="cpu") == "cpu ORT_BUILD=cpu asks for it"
    assert _build(tmp_path / "b", None, ORT_BUILD="gpu") == "gpu ORT_BUILD=gpu asks for it"
    assert _build(tmp_path / "c", gpu, EXTRAS="test,cpu") == "cpu EXTRAS names it"
    assert _build(tmp_path / "d", None, EXTRAS="gpu", ORT_BUILD="gpu") == "gpu ORT_BUILD=gpu asks for it"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORT_BUILD": "rocm"}, "ORT_BUILD must be cpu or gpu, not 'rocm'"),
        ({"EXTRAS": "test,cpu,gpu"}, "EXTRAS names both cpu and gpu"),
        ({"EXTRAS": "cpu", "ORT_BUILD": "gpu"}, "ORT_BUILD=gpu, but EXTRAS names the cpu build"),
    ],
)
def test_a_contradiction_stops_the_script(tmp_path: Path, env: dict[str, str], message: str) -> None:
    done = _run(tmp_path, "ort_build", None, **env)
    assert done.returncode != 0 and done.stdout == ""
    assert message in done.stderr


@pytest.mark.parametrize(
    ("extras", "build", "expected"),
    [
        ("test,transformer", "cpu", "test,transformer,cpu"),  # scripts/test.sh's extras, on this machine
        ("test", "gpu", "test,gpu"),
        ("", "cpu", "cpu"),
        ("gpu,test", "gpu", "test,gpu"),
    ],
)
def test_the_build_joins_the_extras_once(tmp_path: Path, extras: str, build: str, expected: str) -> None:
    done = _run(tmp_path, f'with_build "{extras}" {build}')
    assert done.stdout.strip() == expected


def test_the_build_not_picked_is_found_to_be_taken_out(tmp_path: Path) -> None:
    # This environment has the OpenVINO build, the cpu extra's.
    found = _run(tmp_path, f'other_builds "{sys.executable}" "$(ort_package gpu)"')
    assert (found.returncode, found.stdout.strip()) == (0, "onnxruntime-openvino"), found.stderr
    found = _run(tmp_path / "cpu", f'other_builds "{sys.executable}" "$(ort_package cpu)"')
    assert (found.returncode, found.stdout.strip()) == (0, ""), found.stderr
    found = _run(tmp_path / "all", f'other_builds "{sys.executable}" ""')  # what is taken out when one is stale
    assert (found.returncode, found.stdout.strip()) == (0, "onnxruntime-openvino"), found.stderr


def test_sourcing_the_script_installs_nothing(tmp_path: Path) -> None:
    copy = tmp_path / "clone" / "scripts"
    copy.mkdir(parents=True)
    shutil.copy(SETUP, copy / "setup.sh")
    done = subprocess.run(
        [BASH, "-c", f'. "{copy / "setup.sh"}" && declare -F main'],
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "main"
    assert not (tmp_path / "clone" / ".venv").exists() and not (tmp_path / ".venv").exists()
