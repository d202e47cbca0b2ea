"""Package namespaces whose names are imported on first use (PEP 562).

``wirekit exec HOST -- true`` should not pay for the exec server, key
parsing or X.509 when it uses none of them: a package ``__init__`` that
re-exports its modules' names through :func:`lazy_exports` imports a module
only when one of its names is first looked up. Type checkers see the names
through the package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], modules: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``namespace`` is its
    ``globals()``; ``modules`` maps each relative module name to the names it
    exports. A name, once loaded, is stored in the namespace like a normal import."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
