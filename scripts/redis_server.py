"""A real redis-server (Debian's, installed by scripts/ensure-redis.sh) on 127.0.0.1, in a fresh
folder, on a free port, without persistence; stopped by its process id.

    python scripts/redis_server.py run --port 6379     # a server until Ctrl-C or SIGTERM

    >>> with RedisServer() as server:                  # doctest: +SKIP
    ...     server.url                                 # 'redis://127.0.0.1:40123/0'
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.services import MissingPart, Service, free_port, serve


class RedisServer(Service):
    prefix = "rayflow-redis-"

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingPart("redis-server is missing: bash scripts/ensure-redis.sh installs it")
        self.folder.mkdir(parents=True, exist_ok=True)
        proc = self.spawn(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            "redis.log",
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MissingPart(f"redis-server did not start on port {self.port}")
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a server on 127.0.0.1 until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=6379)
    args = parser.parse_args(argv)

    def announce(server: RedisServer) -> None:
        print(f"redis-server on {server.url} (Ctrl-C or SIGTERM stops it)", flush=True)

    return serve(RedisServer(args.port), announce)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
