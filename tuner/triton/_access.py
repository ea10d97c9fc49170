"""The secret header that Triton's model-changing protocols ask of every client.

A Triton server in explicit model control loads whatever a client sends it: one model-load
request with a python-backend ``model.py`` among its files runs that code as the server's user.
So every server the tuner starts restricts its ``model-repository``, ``model-config`` and
``shared-memory`` protocols to clients that send a header with a secret drawn at each start
(Triton's ``--grpc-restricted-protocol`` and ``--http-restricted-api``); health, metadata,
statistics and inference stay open.

    access = Access.generate()                 # at each server start
    command += access.server_args()            # the server's restriction options
    client = http_client(url, access)          # a tritonclient that sends the header
    perf_analyzer_cmd += access.perf_analyzer_args(protocol)

On HTTP the header is the key as given (``tuner-key: SECRET``); on gRPC Triton expects the key
with the prefix ``triton-grpc-protocol-`` (checked on Triton 2.51). The value never appears in a
repr, and ``redact`` takes it out of a text before it is logged.

A remote server is restricted by whoever runs it: the tuner takes that server's key and value
from the environment (``TUNER_TRITON_HEADER_KEY``, ``TUNER_TRITON_HEADER_VALUE``), never from the
study file.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_aio
import tritonclient.http as triton_http
from tritonclient._plugin import InferenceServerClientPlugin

from tuner.errors import ConfigError

#: The protocols a client must show the secret for: those that load code or reach memory.
RESTRICTED = ("model-repository", "model-config", "shared-memory")
#: The header key of the servers the tuner starts.
DEFAULT_KEY = "tuner-key"
#: Triton's prefix of a restricted protocol's header key on gRPC.
GRPC_PREFIX = "triton-grpc-protocol-"
#: The environment variables that give a remote server's header.
ENV_KEY = "TUNER_TRITON_HEADER_KEY"
ENV_VALUE = "TUNER_TRITON_HEADER_VALUE"

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_VALUE = re.compile(r"[!-~]+")  # printable, no space: it travels in a header and in a command line
_REDACTED = "<secret>"

_Client = TypeVar(
    "_Client", triton_http.InferenceServerClient, triton_grpc.InferenceServerClient, triton_aio.InferenceServerClient
)


@dataclass(frozen=True)
class Access:
    """The header key and secret value that a server's restricted protocols expect.

    Attributes:
        key: The header key as the server was given it (``tuner-key``).
        value: The secret; kept out of the repr.
    """

    key: str
    value: str = field(repr=False)

    @classmethod
    def generate(cls, key: str = DEFAULT_KEY) -> Access:
        """A fresh secret (32 random bytes, URL-safe), for one server start."""
        return cls(key, secrets.token_urlsafe(32))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Access | None:
        """The header of a server someone else runs, from ``TUNER_TRITON_HEADER_KEY`` / ``_VALUE``.

        Returns None when neither is set (the server restricts nothing the tuner knows of).

        Raises:
            ConfigError: only one of them is set, or either is malformed (naming the variable,
                never the value).
        """
        env = os.environ if environ is None else environ
        key, value = env.get(ENV_KEY, ""), env.get(ENV_VALUE, "")
        if not key and not value:
            return None
        if not _KEY.fullmatch(key):
            raise ConfigError(f"{ENV_KEY}: a header key of letters, digits, '-' and '_' is needed with {ENV_VALUE}")
        if not _VALUE.fullmatch(value):
            raise ConfigError(f"{ENV_VALUE}: a value of printable characters without spaces is needed with {ENV_KEY}")
        return cls(key, value)

    def http_headers(self) -> dict[str, str]:
        """The header as Triton's HTTP endpoint expects it."""
        return {self.key: self.value}

    def grpc_headers(self) -> dict[str, str]:
        """The header (gRPC metadata) as Triton's gRPC endpoint expects it: the key with Triton's prefix."""
        return {f"{GRPC_PREFIX}{self.key}": self.value}

    def server_args(self) -> list[str]:
        """tritonserver's options restricting the RESTRICTED protocols on HTTP and gRPC to this header."""
        protocols = ",".join(RESTRICTED)
        return [
            f"--grpc-restricted-protocol={protocols}:{self.key}={self.value}",
            f"--http-restricted-api={protocols}:{self.key}={self.value}",
        ]

    def perf_analyzer_args(self, protocol: str) -> list[str]:
        """perf_analyzer's ``-H`` option sending the header over ``protocol`` (``grpc`` or ``http``).

        perf_analyzer 2.50 passes ``-H`` on gRPC too (as metadata), although its help says HTTP only.
        """
        ((name, value),) = (self.grpc_headers() if protocol == "grpc" else self.http_headers()).items()
        return ["-H", f"{name}:{value}"]

    def redact(self, text: str) -> str:
        """``text`` with the secret replaced, for a log line."""
        return text.replace(self.value, _REDACTED)


class HeaderPlugin(InferenceServerClientPlugin):
    """A tritonclient plugin that adds the header to every request of the client it is registered on."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def __call__(self, request: object) -> None:
        request.headers.update(self._headers)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"HeaderPlugin({sorted(self._headers)})"


def with_access(client: _Client, access: Access | None) -> _Client:
    """``client`` sending ``access``'s header with every request (as its protocol needs it); None: as it is."""
    if access is not None:
        grpc = isinstance(client, (triton_grpc.InferenceServerClient, triton_aio.InferenceServerClient))
        client.register_plugin(HeaderPlugin(access.grpc_headers() if grpc else access.http_headers()))
    return client


def redact(text: str, access: Access | None) -> str:
    """``text`` with ``access``'s secret replaced (as it is where there is none)."""
    return access.redact(text) if access is not None else text
