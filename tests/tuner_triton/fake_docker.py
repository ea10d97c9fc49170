"""A stand-in for the docker client, for tests on machines without a Docker engine.

Every call is appended to $FAKE_DOCKER_CALLS (one JSON list per line). ``run`` serves Triton's
health endpoints on the published HTTP port (ready unless $FAKE_DOCKER_READY is 0) until
``stop`` or ``rm --force`` of its container name, or a signal; ``stop`` and ``rm`` end it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def _pid_file(name: str) -> Path:
    return Path(os.environ["FAKE_DOCKER_CALLS"]).with_name(f"{name}.pid")


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ready = os.environ.get("FAKE_DOCKER_READY", "1") == "1"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _run(args: list[str]) -> None:
    name = args[args.index("--name") + 1]
    http = next(args[i + 1] for i, a in enumerate(args) if a == "--publish" and args[i + 1].endswith(":8000"))
    address, port, _ = http.rsplit(":", 2)
    _pid_file(name).write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"fake container {name} serving on {address}:{port}", flush=True)
    HTTPServer((address, int(port)), _Health).serve_forever()


def _end(name: str) -> None:
    pid_file = _pid_file(name)
    if not pid_file.is_file():
        print(f"Error: No such container: {name}", file=sys.stderr)
        sys.exit(1)
    try:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    except ProcessLookupError:
        pass
    pid_file.unlink()


def main() -> None:
    args = sys.argv[1:]
    with open(os.environ["FAKE_DOCKER_CALLS"], "a") as calls:
        calls.write(json.dumps(args) + "\n")
    if args[0] == "run":
        _run(args)
    elif args[0] in ("stop", "rm"):
        _end(args[-1])


if __name__ == "__main__":
    main()
