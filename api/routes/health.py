"""``/healthz``: the API is up and its storage answers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import StoreDep
from api.errors import error_responses
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=error_responses(503))
async def healthz(store: StoreDep) -> Health:
    """Answers 200 while the storage answers, 503 otherwise. Never needs a token."""
    await run_in_threadpool(store.ping)
    return Health(status="ok", storage=store.engine.dialect.name)
