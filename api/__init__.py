"""The tuner's REST API: studies, trials, the Pareto front and recommendations over HTTP.

    uvicorn.run(create_app(ApiSettings.from_env("sqlite:///tuner.db")))

or ``tuner api --storage URL``. It reads the study storage only through ``tuner.storage`` and
``tuner.storage`` and judges configs through ``tuner.study`` (the CLI's, the report's and the
export's rule); starting and stopping studies (bearer token only) runs ``tuner optimize`` in a
child process.
"""

from __future__ import annotations

from api.app import create_app, serve
from api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "serve"]
