"""Module handlers: one small class per layer type, looked up by type.

A handler knows, for one layer type, which channel spaces the layer reads
and writes during a forward pass (:meth:`ModuleHandler.trace`), how to slice
its tensors when channels go (:meth:`ModuleHandler.prune`), how to take
channels out of its computation without slicing, for the masked reference
(:meth:`ModuleHandler.mask`) and how many channels a slot has now
(:meth:`ModuleHandler.slot_size`); where they apply, its layers for depth
pruning, the MACs torch's layer types do not count, where the activation
scorer reads its channels and the mode gradient scoring runs it in.
Adding a layer type is one new file in this folder that subclasses
:class:`ModuleHandler` and registers it with :func:`register_handler`:
every module of the folder is imported here.
"""

import importlib
import pkgutil

from speechbrain_prune.handlers.base import (  # noqa: F401
    ModuleHandler,
    handled_type,
    handler_for,
    register_handler,
    registered_types,
)

# Importing the modules fills the registry.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

del _module
