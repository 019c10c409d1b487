"""The job master's one HTTP port: the REST API under ``/api/v1/``, ``/metrics`` for Prometheus,
``/health``, and the web UI (static files shipped in the package, no CDN).

Mutating calls (every POST) need ``Authorization: Bearer <token>`` when the master has a token.
Errors are JSON: ``{"error": "..."}`` with 404 (unknown topology or component), 400 (a malformed
body), 401 (no or wrong token), 409 (not possible in the topology's state).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from rayflow.errors import RayflowError
from rayflow.master.master import JobMaster, UnknownTopology
from rayflow.master.prometheus import render_metrics

log = logging.getLogger("rayflow.master.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UI_FILES = ("index.html", "app.js", "style.css")


class BadRequest(ValueError):
    """The request's body or parameters are malformed."""


def make_app(master: JobMaster, token: str = "") -> web.Application:
    """The aiohttp application serving ``master`` (see module docstring)."""

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and token and not _authorized(request, token):
            return _error(401, "this call needs the header 'Authorization: Bearer <token>'")
        try:
            return await handler(request)
        except UnknownTopology as exc:
            return _error(404, str(exc))
        except BadRequest as exc:
            return _error(400, str(exc))
        except RayflowError as exc:
            return _error(409, str(exc))

    async def topologies(request: web.Request) -> web.Response:
        return web.json_response({"topologies": await call(master.list)})

    async def topology(request: web.Request) -> web.Response:
        return web.json_response(await call(master.status, request.match_info["name"]))

    async def component(request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(await call(master.component, info["name"], info["component"]))

    async def kill(request: web.Request) -> web.Response:
        body = await _body(request)
        wait = body.get("wait", 30)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
            raise BadRequest(f"'wait' must be a number of seconds >= 0, got {wait!r}")
        with_savepoint = body.get("savepoint", False)
        if not isinstance(with_savepoint, bool):
            raise BadRequest(f"'savepoint' must be true or false, got {with_savepoint!r}")
        name = request.match_info["name"]
        return web.json_response(await call(master.kill, name, wait, with_savepoint))

    async def savepoint(request: web.Request) -> web.Response:
        body = await _body(request)
        timeout = body.get("timeout", 120)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise BadRequest(f"'timeout' must be a number of seconds > 0, got {timeout!r}")
        return web.json_response(await call(master.savepoint, request.match_info["name"], timeout))

    async def rebalance(request: web.Request) -> web.Response:
        body = await _body(request)
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
            await _body(request)  # a malformed body is still a 400
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
        kind = {"html": "text/html", "js": "application/javascript", "css": "text/css"}
        return web.Response(text=content, content_type=kind[name.rsplit(".", 1)[1]])

    app = web.Application(middlewares=[errors])
    base = "/api/v1/topologies"
    app.add_routes(
        [
            web.get(base, topologies),
            web.get(base + "/{name}", topology),
            web.get(base + "/{name}/components/{component}", component),
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


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return given.startswith("Bearer ") and secrets.compare_digest(given[7:].strip(), token)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def serve_in_thread(master: JobMaster, host: str, port: int, token: str = "") -> str:
    """Serve ``master`` on ``host:port`` from a thread of its own; returns the URL once bound
    (raises ``OSError`` if the port is taken)."""
    bound: concurrent.futures.Future[str] = concurrent.futures.Future()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(make_app(master, token), access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port)
            loop.run_until_complete(site.start())
        except BaseException as exc:
            bound.set_exception(exc)
            return
        bound.set_result(f"http://{host}:{port}")
        loop.run_forever()

    threading.Thread(target=run, name="rayflow-http", daemon=True).start()
    return bound.result(timeout=60)
