"""The job master's one HTTP port: the REST API under ``/api/v1/``, ``/metrics`` for Prometheus,
``/health``, and the web UI (static files shipped in the package, no CDN).

Every request first passes :class:`~rayflow.master.access.AccessPolicy` (``Host``, ``Origin``,
``Content-Type: application/json`` and the bearer token for writes) and its connection the
:class:`~rayflow.master.connections.Limits` (header, idle and body timeouts, a connection cap,
a body size). Errors are JSON: ``{"error": "..."}`` with 404 (unknown topology or component),
400 (a malformed body or Host), 401 (no or wrong token), 403 (a foreign Host or Origin), 408 (too
slow), 409 (not possible in the topology's state), 413 (a body too big), 415 (a write that is not
``application/json``), 503 (too many connections).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from rayflow.errors import RayflowError
from rayflow.master.access import AccessPolicy
from rayflow.master.connections import GuardedSite, Limits
from rayflow.master.history import WINDOWS
from rayflow.master.master import JobMaster, UnknownTopology
from rayflow.master.prometheus import render_metrics
from rayflow.master.samples import METRICS

log = logging.getLogger("rayflow.master.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# the UI, and uPlot 1.6.32 (MIT, https://github.com/leeoniya/uPlot) vendored from its npm release
UI_FILES = (
    "index.html", "app.js", "graph.js", "style.css",
    "uPlot.iife.min.js", "uPlot.min.css", "uPlot-LICENSE.txt",
)  # fmt: skip
DEFAULT_HISTORY = ("emitted", "executed", "capacity", "backpressure")
MAX_HISTORY_METRICS = 32
HISTORY_STEPS = tuple(f"{step:g}" for step, _slots in WINDOWS)  # "1", "10", "60"
LOG_TAIL_BYTES = 16_384  # where a log read without offsets starts: the UI's first view


class BadRequest(ValueError):
    """The request's body or parameters are malformed."""


class Refused(Exception):
    """A request answered with ``status`` and a JSON error, whatever its handler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def make_app(
    master: JobMaster, policy: AccessPolicy, limits: Limits | None = None
) -> web.Application:
    """The aiohttp application serving ``master`` to whom ``policy`` lets in (see module
    docstring)."""
    limits = limits or Limits()

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = policy.refusal(request.method, request.headers)
        if refused is not None:
            if refused[0] == 403:
                log.warning("refused %s %s from %s: %s", request.method, request.path,
                            request.remote, refused[1])  # fmt: skip
            return _error(*refused)
        try:
            return await handler(request)
        except UnknownTopology as exc:
            return _error(404, str(exc))
        except BadRequest as exc:
            return _error(400, str(exc))
        except Refused as exc:  # a body too slow or too big: the connection is not reused
            response = _error(exc.status, str(exc))
            response.force_close()
            return response
        except RayflowError as exc:
            return _error(409, str(exc))

    async def topologies(request: web.Request) -> web.Response:
        return web.json_response({"topologies": await call(master.list)})

    async def topology(request: web.Request) -> web.Response:
        return web.json_response(await call(master.status, request.match_info["name"]))

    async def component(request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(await call(master.component, info["name"], info["component"]))

    async def history(request: web.Request) -> web.Response:
        asked = _history_query(request.query)
        answer = await call(master.history, request.match_info["name"], *asked)
        return web.json_response(answer)

    async def task_log(request: web.Request) -> web.Response:
        info = request.match_info
        if not _is_index(info["task"], 6):
            raise BadRequest(f"the task must be an index, got {info['task'][:20]!r}")
        offsets = _log_offsets(request.query)
        answer = await call(
            master.read_log, info["name"], info["component"], int(info["task"]), offsets,
            LOG_TAIL_BYTES,
        )  # fmt: skip
        return web.json_response(answer)

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            async with asyncio.timeout(limits.body_timeout):
                text = await request.text()
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {limits.body_timeout:g}s") from None
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"the body is over {limits.max_body_bytes} bytes") from None
        return _parse_body(text)

    async def kill(request: web.Request) -> web.Response:
        body = await body_of(request)
        wait = body.get("wait", 30)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
            raise BadRequest(f"'wait' must be a number of seconds >= 0, got {wait!r}")
        with_savepoint = body.get("savepoint", False)
        if not isinstance(with_savepoint, bool):
            raise BadRequest(f"'savepoint' must be true or false, got {with_savepoint!r}")
        name = request.match_info["name"]
        return web.json_response(await call(master.kill, name, wait, with_savepoint))

    async def savepoint(request: web.Request) -> web.Response:
        body = await body_of(request)
        timeout = body.get("timeout", 120)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise BadRequest(f"'timeout' must be a number of seconds > 0, got {timeout!r}")
        return web.json_response(await call(master.savepoint, request.match_info["name"], timeout))

    async def rebalance(request: web.Request) -> web.Response:
        body = await body_of(request)
        wait = body.get("wait", 30)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
            raise BadRequest(f"'wait' must be a number of seconds >= 0, got {wait!r}")
        parallelism = body.get("parallelism")
        if (
            not isinstance(parallelism, dict)
            or not parallelism
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in parallelism.values())
        ):
            raise BadRequest(
                "'parallelism' must map component ids to task counts, e.g. {\"split\": 4}"
            )
        name = request.match_info["name"]
        return web.json_response(await call(master.rebalance, name, parallelism, wait))

    def simple(method: Callable[[str], Any]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            await body_of(request)  # a malformed body is still a 400
            return web.json_response(await call(method, request.match_info["name"]))

        return handler

    async def metrics(request: web.Request) -> web.Response:
        text = await call(render_metrics, master)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "topologies": len(master.jobs)})

    async def ui_file(request: web.Request) -> web.Response:
        name = request.match_info.get("file") or "index.html"
        if name not in UI_FILES:
            raise web.HTTPNotFound()
        content = resources.files("rayflow.master.ui").joinpath(name).read_text()
        kind = {
            "html": "text/html", "js": "application/javascript", "css": "text/css",
            "txt": "text/plain",
        }  # fmt: skip
        return web.Response(text=content, content_type=kind[name.rsplit(".", 1)[1]])

    app = web.Application(middlewares=[errors], client_max_size=limits.max_body_bytes)
    base = "/api/v1/topologies"
    app.add_routes(
        [
            web.get(base, topologies),
            web.get(base + "/{name}", topology),
            web.get(base + "/{name}/components/{component}", component),
            web.get(base + "/{name}/history", history),
            web.get(base + "/{name}/components/{component}/tasks/{task}/log", task_log),
            web.post(base + "/{name}/kill", kill),
            web.post(base + "/{name}/rebalance", rebalance),
            web.post(base + "/{name}/savepoint", savepoint),
            web.post(base + "/{name}/activate", simple(master.activate)),
            web.post(base + "/{name}/deactivate", simple(master.deactivate)),
            web.get("/metrics", metrics),
            web.get("/health", health),
            web.get("/", ui_file),
            web.get("/ui/{file}", ui_file),
        ]
    )
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _parse_body(text: str) -> dict[str, Any]:
    """A request's JSON object (``{}`` for an empty body).

    >>> _parse_body(""), _parse_body('{"wait": 5}')
    ({}, {'wait': 5})
    """
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _history_query(
    query: Any,
) -> tuple[str | None, int | str | None, list[str], float, float | None]:
    """``component``, ``task``, ``metrics``, ``since`` and ``step`` of ``GET .../history``,
    checked.

    >>> _history_query({"component": "split", "task": "*", "metrics": "executed,capacity"})[:3]
    ('split', '*', ['executed', 'capacity'])
    >>> _history_query({"metrics": "rm -rf"})
    Traceback (most recent call last):
    ...
    rayflow.master.http.BadRequest: unknown metric 'rm -rf'; known: emitted, ... or user.<name>
    """
    component = query.get("component") or None
    task: int | str | None = query.get("task") or None
    if task is not None and task != "*":
        if not _is_index(task, 6):
            raise BadRequest(f"'task' must be a task index or *, got {task!r}")
        task = int(task)
    if task is not None and component is None:
        raise BadRequest("'task' needs a 'component'")
    names = [m for m in (query.get("metrics") or ",".join(DEFAULT_HISTORY)).split(",") if m]
    if len(names) > MAX_HISTORY_METRICS:
        raise BadRequest(f"at most {MAX_HISTORY_METRICS} metrics a call, got {len(names)}")
    for name in names:
        user = name.startswith("user.") and 5 < len(name) <= 105
        if name not in METRICS and not user:
            raise BadRequest(
                f"unknown metric {name[:60]!r}; known: {', '.join(METRICS)} or user.<name>"
            )
    since = query.get("since")
    try:
        start = time.time() - 600 if since is None else float(since)
    except ValueError:
        raise BadRequest(f"'since' must be epoch seconds, got {since[:40]!r}") from None
    if not math.isfinite(start):
        raise BadRequest("'since' must be a finite number of epoch seconds")
    step = query.get("step")
    if step is not None and step not in HISTORY_STEPS:
        raise BadRequest(f"'step' must be one of {', '.join(HISTORY_STEPS)}, got {step[:20]!r}")
    return component, task, names, start, None if step is None else float(step)


def _is_index(text: str, digits: int) -> bool:
    """A non-negative decimal integer of at most ``digits`` ASCII digits (``"²"`` is a digit to
    ``str.isdigit`` and not to ``int``)."""
    return text.isascii() and text.isdigit() and len(text) <= digits


def _log_offsets(query: Any) -> dict[str, int] | None:
    """``out`` and ``err`` of a log read: where the previous read ended (None: the tail).

    >>> _log_offsets({"out": "120", "err": "0"}), _log_offsets({})
    ({'out': 120, 'err': 0}, None)
    """
    offsets = {}
    for stream in ("out", "err"):
        value = query.get(stream)
        if value is not None:
            if not _is_index(value, 15):
                raise BadRequest(f"'{stream}' must be a byte offset, got {value[:20]!r}")
            offsets[stream] = int(value)
    return offsets or None


@dataclass
class Served:
    """A running HTTP port (:func:`serve_in_thread`): its URL, and a way to close it."""

    url: str
    port: int
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner

    def close(self, timeout: float = 10.0) -> None:
        """Stop listening and end the server's thread (tests; the master serves until it ends)."""
        done = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        try:
            done.result(timeout=timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


def serve_in_thread(
    master: JobMaster,
    host: str,
    port: int,
    token: str = "",
    allowed_hosts: Iterable[str] | str = (),
    limits: Limits | None = None,
    listen: str | None = None,
) -> Served:
    """Serve ``master`` on ``host:port`` (0: a free port) from a thread of its own; returns once
    bound (raises ``OSError`` if the port is taken, :class:`~rayflow.errors.UsageError` if
    ``host`` is beyond loopback and there is no ``token``, or an allowed host is malformed).

    ``listen`` binds another address than ``host`` while the checks stay those of ``host``
    (tests give a pod's ``0.0.0.0`` rules on loopback, so they never listen on the network)."""
    allowed = allowed_hosts.split(",") if isinstance(allowed_hosts, str) else allowed_hosts
    policy = AccessPolicy(host, token, tuple(allowed))
    limits = limits or Limits()
    bound: concurrent.futures.Future[Served] = concurrent.futures.Future()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            make_app(master, policy, limits),
            access_log=None,
            keepalive_timeout=limits.idle_timeout,
            lingering_time=limits.lingering_time,
        )
        try:
            loop.run_until_complete(runner.setup())
            site = GuardedSite(runner, host if listen is None else listen, port, limits)
            loop.run_until_complete(site.start())
        except BaseException as exc:
            bound.set_exception(exc)
            return
        where = site.host if ":" not in site.host else f"[{site.host}]"
        bound.set_result(Served(f"http://{where}:{site.port}", site.port, loop, runner))
        try:
            loop.run_forever()
        finally:
            loop.close()

    threading.Thread(target=run, name="rayflow-http", daemon=True).start()
    return bound.result(timeout=60)
