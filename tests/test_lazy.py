"""Package namespaces filled on first use (wirekit._lazy)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wirekit.security
import wirekit.services.exec


def test_a_lazy_name_is_the_module_attribute_and_stays_in_the_namespace() -> None:
    from wirekit.security import keys

    assert wirekit.security.sign is keys.sign
    assert "sign" in vars(wirekit.security)  # the second lookup is a plain one
    from wirekit.services.exec import server

    assert wirekit.services.exec.start_exec is server.start_exec


def test_every_exported_name_resolves_and_is_listed() -> None:
    for package in (wirekit.security, wirekit.services.exec):
        for name in package.__all__:
            assert getattr(package, name) is not None
            assert name in dir(package)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = wirekit.security.nothing_here
    assert not hasattr(wirekit.services.exec, "nothing_here")


def test_importing_a_package_imports_none_of_its_modules() -> None:
    script = (
        "import sys, wirekit.security, wirekit.services.exec\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cryptography', "
        "'wirekit.security.', 'wirekit.services.exec.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert done.stdout == b"[]\n"
