"""Every module of the package imports on its own: no import cycles."""

import importlib
import pkgutil
import sys

import pytest

import speechbrain_prune

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(
        speechbrain_prune.__path__, prefix="speechbrain_prune."
    )
    if not m.name.endswith("__main__")  # runs the command line
)


def _forget_package():
    for name in list(sys.modules):
        if name == "speechbrain_prune" or name.startswith("speechbrain_prune."):
            del sys.modules[name]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_alone(name):
    """Imported first, before any other module of the package."""
    saved = {
        k: v
        for k, v in sys.modules.items()
        if k.startswith("speechbrain_prune")
    }
    _forget_package()
    try:
        importlib.import_module(name)
    finally:
        _forget_package()
        sys.modules.update(saved)


def test_every_module_is_listed():
    assert "speechbrain_prune.selection.selector" in MODULES
    assert "speechbrain_prune.graph.depth" in MODULES
