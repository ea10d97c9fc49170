from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tuner.model import _bundled as models

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a PostgreSQL database made for the test and dropped after.

    A database of its own keeps a branch's new migration off the shared `test` database, whose
    version other branches' code would not know.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database made for the test and dropped after."""
    with fresh_postgres_database() as url:
        yield url


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a new PostgreSQL database on 127.0.0.1:5432, dropped (connections and all) after."""
    name = f"tuner_test_{uuid.uuid4().hex[:8]}"
    # pre-ping: a test may restart PostgreSQL, which drops the pooled connection
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

#: Fixtures defined here are cheap once scripts/test.sh has prepared the models: no grouping by them.
_ROOT_BASEIDS = ("", "tests")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Keeps the tests that share a module- or session-wide fixture on one xdist worker.

    Such fixtures start servers or run whole studies; on several workers each would build its own.
    The group is where the widest such fixture is defined (``tests/api`` for the API's servers, a
    module's path for its own). Marked as each test is collected, before xdist reads the groups.
    """
    group = _shared_fixture_home(item)
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


def _shared_fixture_home(item: pytest.Item) -> str | None:
    """Where the widest shared fixture is defined, and which of its params the test takes.

    A parametrized shared fixture (the API's storage: SQLite or PostgreSQL) has one instance per
    param, each built once wherever its tests run: the tests of each param form a group of their own,
    so that the two halves run side by side instead of one after the other.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    shared = {
        name: definition.baseid
        for name, definitions in info.name2fixturedefs.items()
        for definition in definitions[-1:]
        if definition.scope in ("session", "package", "module") and definition.baseid not in _ROOT_BASEIDS
    }
    if not shared:
        return None
    home = min(shared.values(), key=len)
    params = getattr(item, "callspec", None)
    taken = [f"{name}={params.params[name]}" for name in sorted(shared) if params and name in params.params]
    # no "]" at the end: xdist takes a node id ending in "]" for a parametrized test with no group
    return f"{home}:{','.join(taken)}" if taken else home


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The project's model repository, with the bundled digits_forest model prepared."""
    repository = REPO_ROOT / "model_repository"
    models.prepare("digits_forest", repository)
    return repository


@pytest.fixture(scope="session")
def text_detection_onnx(model_repository: Path) -> Path:
    """The PP-OCRv4 detection model, taken out of the rapidocr_onnxruntime wheel (downloaded once)."""
    return models.prepare("text_detection", model_repository)


@pytest.fixture(scope="session")
def text_recognition_onnx(model_repository: Path) -> Path:
    """The PP-OCRv4 recognition model from the same wheel."""
    return models.prepare("text_recognition", model_repository)


@pytest.fixture(scope="session")
def ocr_pipeline_repository(model_repository: Path) -> Path:
    """The bundled OCR pipeline's repository (an ensemble), its detector's ONNX file prepared."""
    models.prepare("ocr_pipeline", model_repository)
    return model_repository / "ocr_pipeline"


@pytest.fixture(scope="session")
def digits_onnx(model_repository: Path) -> Path:
    return model_repository / "digits_forest" / "1" / "model.onnx"


@pytest.fixture
def tuner_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator:
    """Runs ``tuner ARGS`` in this process through ``tuner.cli.main``, as the console script does.

    Returns a ``subprocess.CompletedProcess`` (exit code, stdout, stderr), so a test of the
    command's messages and exit codes pays no interpreter start and imports (2-3 s a run).
    ``cwd`` is the folder the command runs in. main() installs its own SIGINT and SIGTERM
    handlers: they are put back after.
    """
    from tuner.cli import _commands as cli

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["tuner", *map(str, args)])
        capsys.readouterr()  # only this run's output
        code: object = 0
        try:
            cli.main()
        except SystemExit as exited:
            code = exited.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, int(code or 0), out, err)

    yield run
    for sig, handler in saved.items():
        signal.signal(sig, handler)
