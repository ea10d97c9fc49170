"""The FastAPI application and the uvicorn server that runs it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from api.confine import is_loopback
from api.deps import require_token
from api.errors import install_error_handlers
from api.routes import health, studies, trials, verify
from api.runs import RunManager, RunSlots
from api.settings import LOOPBACK_HOSTS, ApiSettings
from api.studies import StudyCache
from api.verify_runs import VerifyManager
from tuner import __version__
from tuner.errors import StorageError
from tuner.storage import Store, redact_url

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def create_app(settings: ApiSettings, store: Store | None = None) -> FastAPI:
    """The API on ``settings.storage``.

    Args:
        settings: What to serve and who may change it.
        store: The storage, already open; without it, it opens (and is migrated) when the app starts.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal store
        store = store or Store(settings.storage, outage_s=settings.storage_wait_s)
        slots = RunSlots(settings.max_runs)
        runs = RunManager(settings, study_exists=lambda name: _exists(store, name), slots=slots)
        app.state.settings = settings
        app.state.store = store
        app.state.studies = StudyCache(store, settings.refresh_s)
        app.state.runs = runs
        app.state.slots = slots
        app.state.verifier = VerifyManager(settings, slots)
        logger.info("serving %s (writes %s)", redact_url(settings.storage), "on" if settings.writes_enabled else "off")
        try:
            yield
        finally:
            runs.stop_all()
            app.state.verifier.stop_all()
            store.close()

    app = FastAPI(
        title="triton-tuner",
        version=__version__,
        description="Studies of the Triton autotuner: trials, Pareto fronts and the best config under limits.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # A page on another site can make a browser send requests to 127.0.0.1 under its own name (DNS rebinding).
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts or LOOPBACK_HOSTS))
    reads_need = [Depends(require_token)] if settings.read_token_required else []
    app.include_router(health.router)  # probes never need a token
    app.include_router(studies.router, dependencies=reads_need)
    app.include_router(trials.router, dependencies=reads_need)
    app.include_router(studies.write_router)
    app.include_router(verify.router)
    return app


#: How long an idle connection stays open. Longer than clients keep theirs (httpx 5 s, proxies 60 s): a
#: server that closes first races the client's next request on that connection, which then fails with a reset.
KEEP_ALIVE_S = 75


def serve(settings: ApiSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Runs the API with uvicorn until interrupted.

    Raises:
        StorageError: the storage cannot be opened (before the server starts).
    """
    store = Store(settings.storage, outage_s=settings.storage_wait_s)
    if settings.allowed_hosts is None:
        settings = settings.model_copy(update={"allowed_hosts": (*LOOPBACK_HOSTS, host_header(host))})
        if not is_loopback(host):
            logger.warning("listening on %s: requests naming this machine otherwise need TUNER_API_ALLOWED_HOSTS", host)
    uvicorn.run(
        create_app(settings, store),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def host_header(address: str) -> str:
    """How ``address`` appears in a Host header (IPv6 addresses in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _exists(store: Store, name: str) -> bool:
    try:
        store.study_id(name)
    except StorageError:
        return False
    return True
