"""Talk to a Ray cluster's job master: connect, upload a topology's code, submit, command.

``rayflow submit`` packages the topology's code (its folder, or the Python package the folder
belongs to) through Ray's own upload (``py_modules`` or ``working_dir`` become ``gcs://`` URIs),
and the master creates the detached task actors with that ``runtime_env``: the topology then runs
from any folder, and after the submitting shell has exited.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from rayflow.errors import ClusterError

EXCLUDES = [".git", ".venv", "venv", "__pycache__", "*.pyc", "node_modules", ".pytest_cache"]


def code_package(topology_path: str, extra_modules: list[str] | None = None) -> dict[str, Any]:
    """The ``runtime_env`` that brings a topology's code to every node.

    A topology in a package folder (``examples/`` with ``__init__.py``) ships the top package as
    a module (``className: examples.wordcount.Split`` imports); a plain folder ships as the
    working directory (``className: mymodule.Split``).

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "pkg").mkdir()
    >>> _ = (root / "pkg" / "__init__.py").write_text("")
    >>> code_package(str(root / "pkg" / "t.yaml"))["py_modules"] == [str(root / "pkg")]
    True
    >>> code_package(str(root / "t.yaml"))["working_dir"] == str(root)
    True
    """
    folder = os.path.dirname(os.path.abspath(topology_path))
    env: dict[str, Any] = {"excludes": EXCLUDES}
    modules = [os.path.abspath(m) for m in extra_modules or ()]
    if os.path.isfile(os.path.join(folder, "__init__.py")):
        top = folder
        while os.path.isfile(os.path.join(os.path.dirname(top), "__init__.py")):
            top = os.path.dirname(top)
        modules.insert(0, top)
    else:
        env["working_dir"] = folder
    if modules:
        env["py_modules"] = modules
    return env


def connect(address: str | None, runtime_env: dict[str, Any] | None = None) -> None:
    """Connect this process to the Ray cluster at ``address`` (default: ``RAY_ADDRESS`` or the
    cluster last started on this machine)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(
            address=target,
            runtime_env=runtime_env,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"could not reach the Ray cluster at {target}: {exc}. Start one with "
            "`ray start --head --node-ip-address=127.0.0.2` or pass --address HOST:PORT"
        ) from exc


def submit(
    spec: Any,
    topology_path: str,
    address: str | None,
    extra_modules: list[str] | None = None,
    master_options: dict[str, Any] | None = None,
    runtime_env: dict[str, Any] | None = None,
    from_savepoint: str = "",
    allow_non_restored_state: bool = False,
) -> dict[str, Any]:
    """Start the master if needed, upload the code, and submit ``spec``; returns its summary.

    ``runtime_env`` adds to the uploaded code what Ray should give every task (``pip``,
    ``env_vars``, ...); a ``working_dir`` or ``py_modules`` there replaces the uploaded one.
    """
    import ray

    from rayflow.master.actor import get_master
    from rayflow.master.registry import portable_spec

    # The master must not inherit the code package as its own runtime_env: create it first,
    # from a connection without one, then reconnect with the package to upload it.
    connect(address)
    get_master(create=True, **(master_options or {}))
    extra = dict(runtime_env or {})
    connect(address, {**code_package(topology_path, extra_modules), **extra})
    uploaded = {
        k: v
        for k, v in ray.get_runtime_context().runtime_env.items()
        if k in ("py_modules", "working_dir") or k in extra
    }
    return call(
        "submit",
        portable_spec(spec),
        uploaded,
        os.path.abspath(topology_path),
        from_savepoint,
        allow_non_restored_state,
    )


def call(method: str, *args: Any, **kwargs: Any) -> Any:
    """Run a job master command (after :func:`connect`)."""
    import ray

    from rayflow.master.actor import get_master

    try:
        return ray.get(get_master().call.remote(method, *args, **kwargs))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)  # the master's own error, without Ray's wrapping
        if isinstance(cause, Exception):
            raise cause from None
        raise
