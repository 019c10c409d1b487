"""Optional clients (``pip install 'rayflow[kafka]'`` and the like), imported when first used.

>>> require("json", "none", "a test").__name__
'json'
>>> try:
...     require("no_such_client", "kafka", "the Kafka connector")
... except RayflowError as exc:
...     print(exc)
the Kafka connector needs no_such_client: pip install 'rayflow[kafka]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rayflow.errors import RayflowError


def require(
    module: str, extra: str, what: str, error: type[RayflowError] = RayflowError
) -> ModuleType:
    """``module``, or ``error`` saying which extra of rayflow brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(f"{what} needs {module}: pip install 'rayflow[{extra}]'") from exc
