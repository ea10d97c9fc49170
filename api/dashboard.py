"""``tuner dashboard``: optuna-dashboard on the tuner's storage, with labelled charts.

The dashboard labels a study's axes with the metric names stored on it. The tuner sets them
when it creates a study; studies made before that get them here, from their study file.
"""

from __future__ import annotations

import logging
import warnings

import optuna

from tuner.storage import Store, read_info

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def label_studies(store: Store) -> list[str]:
    """Sets the metric names of studies that lack them, from their study file's objectives.

    Returns:
        The names of the studies labelled.
    """
    labelled = []
    for name in store.study_names():
        study = store.load_study(name)
        if study.metric_names:
            continue
        objectives = read_info(study).study_file.get("objectives")
        if not objectives or len(objectives) != len(study.directions):
            continue
        with warnings.catch_warnings():  # experimental since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o["metric"] for o in objectives])
        labelled.append(name)
    if labelled:
        logger.info("set the metric names of %s", ", ".join(labelled))
    return labelled


def serve_dashboard(store: Store, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Labels the studies, then serves optuna-dashboard on the store until interrupted.

    optuna-dashboard's own routes can change studies (rename, delete, notes) and have no
    authentication: keep it on 127.0.0.1 or behind a proxy that checks who asks.
    """
    import optuna_dashboard

    label_studies(store)
    optuna_dashboard.run_server(store.optuna, host=host, port=port)
