"""Module handlers: one small class per layer type, looked up by type.

A handler knows, for one layer type, which channel spaces the layer reads
and writes during a forward pass (:meth:`ModuleHandler.trace`), how to slice
its tensors when channels go (:meth:`ModuleHandler.prune`), how to take
channels out of its computation without slicing, for the masked reference
(:meth:`ModuleHandler.mask`) and how many channels a slot has now
(:meth:`ModuleHandler.slot_size`). Adding a layer type is one new file that
subclasses :class:`ModuleHandler` and registers it with
:func:`register_handler`.
"""

# Importing the modules fills the registry.
from speechbrain_prune.handlers import (  # noqa: F401, E402, I001
    attention_decoder,
    batchnorm,
    conv,
    layernorm,
    ligru,
    linear,
    passthrough,
    rnn,
)
from speechbrain_prune.handlers.base import (  # noqa: F401
    ModuleHandler,
    handled_type,
    handler_for,
    register_handler,
    registered_types,
)
