"""A model of a Triton model repository: its folder, its own config.pbtxt and the backend that runs it.

    study_model = open_model(cfg.model)                   # an ONNX file or a repository's model, its inputs
    model = read_repository_model(repository, "detector")  # ModelError where it cannot be served
    check_launch_runs(model, cfg.server)                   # ConfigError where the launch mode cannot run it
    base = model.config                                    # what each trial's config starts from

The config is parsed with protobuf (tuner.triton.parse_pbtxt) and kept as the text the user
wrote, so a study's plan and its workers all start from the same base; the trial configs are
that base with the tuned knobs set (tuner.triton.tune_config).

Which backends a launch mode runs is known before anything starts: the embedded server (the
nvidia-pytriton wheel's Triton) has the python backend only, so it runs python-backend models
natively and ONNX models through the tuner's runner; ``local``, ``docker`` and ``remote`` run
the backends their server has, which only loading the model can tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import text_format

from tuner.config import ModelSettings, ServerSettings
from tuner.errors import ConfigError, ModelError
from tuner.model._variants import external_data, file_digest, files_digest
from tuner.model_info import ModelInfo, TensorInfo, config_model_info, read_model_info
from tuner.triton import config_backend, parse_pbtxt

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb

#: The file each backend loads from the version folder where ``default_model_filename`` names none.
_DEFAULT_FILES = {"onnxruntime": "model.onnx", "python": "model.py"}
#: Backends the embedded server runs: its python backend, and ONNX through the tuner's runner.
EMBEDDED_BACKENDS: tuple[str, ...] = ("python", "onnxruntime")
#: Launch modes whose server has the backends of a full Triton.
FULL_TRITON_LAUNCHES: tuple[str, ...] = ("local", "docker", "remote")


@dataclass(frozen=True)
class RepositoryModel:
    """A model folder of a Triton repository, as a study tunes it.

    Attributes:
        name: The model's name (its folder's).
        folder: The model's folder, with its config.pbtxt and version folders.
        config_text: Its config.pbtxt as written: the base of every trial's config.
        backend: The backend that runs it (``onnxruntime`` for ``platform: "onnxruntime_onnx"``).
        version: The version folder the server loads: the highest, or the highest its
            ``version_policy`` names where it names versions.
        steps: An ensemble's composing models, in the order its steps first name them, or the
            models a python model calls through BLS (``model.composing``), in the study's order.
    """

    name: str
    folder: Path
    config_text: str
    backend: str
    version: str
    steps: tuple[RepositoryModel, ...] = ()

    @property
    def is_ensemble(self) -> bool:
        return self.backend == "ensemble"

    @property
    def config(self) -> pb.ModelConfig:
        """The model's own config (a new message each time, so no caller changes another's)."""
        return parse_pbtxt(self.config_text)

    @property
    def is_onnx(self) -> bool:
        """True for an ONNX model: the tuner's runner and its precision variants can serve it."""
        return self.backend == "onnxruntime"

    @property
    def config_is_whole(self) -> bool:
        """True where the configs the tuner writes for it (and its steps) leave Triton nothing to complete.

        An ONNX model's config is built with its inputs and outputs (tuner.triton.build_model_config),
        an ensemble's is its own, and a python model's is completed only by its ``auto_complete_config``,
        which its model.py may define. Other backends (OpenVINO, PyTorch, TensorRT, ...) may take
        inputs, outputs or batching from their model files: their configs count as not whole.
        """
        if self.backend == "python":
            try:
                source = self.model_file.read_text(errors="replace")
            except OSError:
                return False
            whole = "auto_complete_config" not in source  # defined, or taken from elsewhere
        else:
            whole = self.backend in ("onnxruntime", "ensemble")
        return whole and all(step.config_is_whole for step in self.steps)

    @property
    def model_file(self) -> Path:
        """The file the backend loads from the version folder."""
        name = self.config.default_model_filename or _DEFAULT_FILES.get(self.backend, "model")
        return self.folder / self.version / name


@dataclass(frozen=True)
class StudyModel:
    """The model a study tunes, as its study file's ``model`` section names it.

    Attributes:
        info: Its inputs and outputs (with ``model.inputs`` applied).
        onnx_file: The FP32 ONNX file the runner serves and the precision variants are built from;
            None for a model that is not ONNX.
        repository: The repository model, where the study names one (``model.repository``).
    """

    info: ModelInfo
    onnx_file: Path | None
    repository: RepositoryModel | None = None

    def digest(self) -> str:
        """The SHA-256 of what the study serves: its ONNX file (with its external data), or every file of
        the repository model's folder and of its steps' folders. Equal where two runs measured the same model.
        """
        if self.repository is None:
            assert self.onnx_file is not None  # a model of no repository is an ONNX file
            return file_digest(self.onnx_file)
        return files_digest(
            [
                (f"{model.name}/{file.relative_to(model.folder).as_posix()}", file)
                for model in (self.repository, *self.repository.steps)
                for file in sorted(model.folder.rglob("*"))
                if file.is_file() and "__pycache__" not in file.parts
            ]
        )


def open_model(settings: ModelSettings) -> StudyModel:
    """Reads the study's model: its ONNX file (``model.path``) or its repository folder.

    A repository model's inputs and outputs come from its config; an ONNX model whose config
    leaves them out (Triton completes them from the file) has them read from its ONNX file.

    Raises:
        ModelError: the model cannot be read or served (see ``read_repository_model``,
            ``tuner.model_info``).
    """
    shapes = [TensorInfo(t.name, t.dtype or "", tuple(t.shape)) for t in settings.inputs]  # "": the model's type
    if settings.repository is None:
        assert settings.path is not None  # ModelSettings holds one of the two
        info = read_model_info(settings.path, shapes, settings.validation_data)
        external_data(settings.path)  # refused here, before any server, where its tensors' files are not beside it
        return StudyModel(info, settings.path)
    model = read_repository_model(settings.repository, settings.name, settings.composing)
    return StudyModel(repository_model_info(model, shapes), model.model_file if model.is_onnx else None, model)


def repository_model_info(model: RepositoryModel, shapes: Sequence[TensorInfo] = ()) -> ModelInfo:
    """A repository model's inputs and outputs: its config's, or its ONNX file's where the config
    leaves them out (Triton completes them from the file); ``shapes`` fix free dimensions."""
    config = model.config
    if model.is_onnx and not (config.input and config.output):
        return read_model_info(model.model_file, shapes)
    return config_model_info(config, shapes)


def read_repository_model(repository: Path, name: str, calls: Sequence[str] = ()) -> RepositoryModel:
    """Reads model ``name`` of ``repository``: its config, backend and version folder.

    An ensemble's composing models are read with it (``RepositoryModel.steps``), and so are the
    models a python model ``calls`` through BLS (``model.composing``).

    Raises:
        ModelError: the config cannot be read or parsed, names another model, names no backend or
            platform, or the model has no version folder (or no model file in it, for ONNX and
            python models); an ensemble names no steps, a model the repository lacks, or another
            ensemble (nested ensembles are not tuned); ``calls`` are given for a model that is not
            a python model (an ensemble's steps are its own), or name a model the repository lacks
            or an ensemble.
    """
    folder = repository / name
    path = folder / "config.pbtxt"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        config = parse_pbtxt(text)
    except text_format.ParseError as exc:
        raise ModelError(f"{path} is not a Triton model config: {exc}") from exc
    if config.name and config.name != name:
        raise ModelError(f"{path} names model {config.name!r}, and its folder is {name!r}: Triton needs them equal")
    backend = config_backend(config)
    if not backend:
        raise ModelError(f"{path} names neither a backend nor a platform")
    versions = sorted((int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    named = set(config.version_policy.specific.versions)
    if named:
        versions = [v for v in versions if v in named]
    if not versions and backend != "ensemble":
        raise ModelError(f"model {name!r} has no version folder (such as {folder / '1'}) its version policy serves")
    if backend == "ensemble" and calls:
        raise ModelError(f"ensemble {name!r} runs the models its config names: leave model.composing out")
    if calls and backend != "python":
        raise ModelError(
            f"model {name!r} runs on the {backend} backend; model.composing names the models a python model calls "
            "through BLS"
        )
    steps = (
        _composing_models(repository, name, config)
        if backend == "ensemble"
        else _steps(repository, f"model {name!r}", calls)
    )
    model = RepositoryModel(name, folder, text, backend, str(versions[0]) if versions else "1", steps)
    if backend in _DEFAULT_FILES and not model.model_file.is_file():
        raise ModelError(f"model {name!r} ({backend} backend) has no {model.model_file}")
    return model


def _composing_models(repository: Path, name: str, config: pb.ModelConfig) -> tuple[RepositoryModel, ...]:
    names = list(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))
    if not names:
        raise ModelError(f"ensemble {name!r} has no ensemble_scheduling steps")
    return _steps(repository, f"ensemble {name!r}", names)


def _steps(repository: Path, caller: str, names: Sequence[str]) -> tuple[RepositoryModel, ...]:
    """The models ``caller`` runs, read from the repository; none may be an ensemble."""
    steps = []
    for step in names:
        if not (repository / step / "config.pbtxt").is_file():
            raise ModelError(f"{caller} runs model {step!r}, which {repository} lacks")
        model = read_repository_model(repository, step)
        if model.is_ensemble:
            raise ModelError(f"{caller} runs ensemble {step!r}: nested ensembles are not tuned")
        steps.append(model)
    return tuple(steps)


def check_launch_runs(model: RepositoryModel, server: ServerSettings) -> None:
    """Raises ConfigError where the study's launch mode cannot run ``model``'s backend (an ensemble's:
    its composing models').

    Raises:
        ConfigError: a backend other than python and onnxruntime on the embedded server; the
            message names the launch modes that could run it. An ensemble under ``remote``: its
            composing models reach that server by a load with their files, and Triton then finds no
            composing model in its repository for the ensemble (checked with Triton 2.51).
    """
    if model.is_ensemble and server.launch == "remote":
        raise ConfigError(
            f"model.name: {model.name!r} is an ensemble, which server.launch remote cannot load (the remote server "
            "resolves an ensemble's composing models from its own repository); use embedded, local or docker"
        )
    for step in (model, *model.steps):
        if server.launch == "embedded" and not step.is_ensemble and step.backend not in EMBEDDED_BACKENDS:
            raise ConfigError(
                f"model.name: {step.name!r} runs on the {step.backend} backend, which the embedded server lacks (it "
                "runs python-backend models, and ONNX models through the tuner's runner); use server.launch "
                f"{', '.join(FULL_TRITON_LAUNCHES[:-1])} or {FULL_TRITON_LAUNCHES[-1]}, with a Triton that has the "
                f"{step.backend} backend"
            )
