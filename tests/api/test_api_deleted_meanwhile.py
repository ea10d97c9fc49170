"""A study deleted while the API holds it open is gone (404, left out of the list), never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import write_small_study

from api.studies import StudyCache
from tuner.errors import StudyNotFoundError
from tuner.storage import Store


def test_a_study_deleted_after_it_was_opened_reads_as_not_found(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tuner.db'}")
    try:
        write_small_study(store, "kept")
        write_small_study(store, "deleted")
        cache = StudyCache(store, refresh_s=60.0)
        opened = cache.get("deleted")  # as GET /studies opens each study before it reads its trials
        store.delete_study("deleted")
        with pytest.raises(StudyNotFoundError, match="'deleted' was deleted"):
            opened.trials()
        assert len(cache.get("kept").trials()) == 12
    finally:
        store.close()
