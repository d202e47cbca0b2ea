"""Child process entry: ``python -m benchmarks.worker MODULE.FUNCTION JSON_KWARGS``.

The driver starts every client and server through this module (pinned with
``taskset``); the function talks back with ``READY``/``RESULT`` lines.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from typing import Any


def resolve(target: str) -> Callable[..., Any]:
    module_name, _, func_name = target.rpartition(".")
    if not module_name or not func_name:
        raise SystemExit(f"worker target must be MODULE.FUNCTION, got {target!r}")
    module = importlib.import_module(f"benchmarks.{module_name}")
    func: Callable[..., Any] = getattr(module, func_name)
    return func


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.worker MODULE.FUNCTION JSON_KWARGS", file=sys.stderr)
        return 2
    func = resolve(argv[0])
    kwargs: dict[str, Any] = json.loads(argv[1])
    func(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
