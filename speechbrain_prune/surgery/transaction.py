"""All-or-nothing surgery: rehearse on a shape-only copy, undo on failure.

Surgery replaces parameters, buffers and whole modules and changes size
attributes; it never writes into the tensors it replaces. A
:class:`ModuleSnapshot` therefore only keeps references (every module's
attributes, containers copied one level deep), and putting them back
returns the model, its parameter objects included, to where it was.
:func:`shape_copy` gives a twin of a model whose tensors live on the
``meta`` device (shapes, no data), on which a plan can be replayed first.

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import copy
import itertools

import torch


def _one_level(state):
    return {
        k: copy.copy(v) if isinstance(v, (dict, list, set)) else v
        for k, v in state.items()
    }


class ModuleSnapshot:
    """The structure of every module of ``root``, to restore later.

    Arguments
    ---------
    root : torch.nn.Module
        The model (or ``ModuleDict`` of a recipe's modules).

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.surgery import remove_block
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> m = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...           rnn_layers=1, rnn_neurons=4, dnn_blocks=2, dnn_neurons=8)
    >>> weight = m.DNN.block_1.linear.w.weight
    >>> snapshot = ModuleSnapshot(m)
    >>> remove_block(m, "DNN.block_1")
    >>> snapshot.restore()
    >>> list(m.DNN.keys()), m.DNN.block_1.linear.w.weight is weight
    (['block_0', 'block_1'], True)
    """

    def __init__(self, root):
        self._entries = [
            (m, type(m), _one_level(vars(m))) for m in root.modules()
        ]

    def restore(self):
        """Puts every module back as it was when the snapshot was taken."""
        for module, cls, state in self._entries:
            if type(module) is not cls:
                module.__class__ = cls
            attributes = vars(module)
            attributes.clear()
            attributes.update(_one_level(state))


@contextlib.contextmanager
def all_or_nothing(root, ledger=None):
    """Runs the block's surgery on ``root``; undoes all of it if it raises.

    Arguments
    ---------
    root : torch.nn.Module
        The model the block changes.
    ledger : SliceLedger, optional
        Restored too, so that it describes the model that is left.

    Example
    -------
    >>> lin = torch.nn.Linear(4, 3)
    >>> from speechbrain_prune.surgery.ledger import replace_tensor
    >>> try:
    ...     with all_or_nothing(lin):
    ...         replace_tensor(lin, "weight", [torch.tensor([0])])
    ...         raise ValueError("a later step fails")
    ... except ValueError:
    ...     pass
    >>> lin.weight.shape
    torch.Size([3, 4])
    """
    snapshot = ModuleSnapshot(root)
    saved = ledger.snapshot() if ledger is not None else None
    try:
        yield
    except BaseException:
        snapshot.restore()
        if ledger is not None:
            ledger.restore(saved)
        raise


def shape_copy(root):
    """A twin of ``root`` whose parameters and buffers hold no data.

    Every parameter and buffer becomes a ``meta`` tensor of the same shape,
    so the copy costs no memory and surgery on it costs next to no time:
    a plan replayed on it shows whether it fits, without touching ``root``.

    Example
    -------
    >>> lin = torch.nn.Linear(4, 3)
    >>> twin = shape_copy(lin)
    >>> twin.weight.shape, twin.weight.device.type, lin.weight.device.type
    (torch.Size([3, 4]), 'meta', 'cpu')
    """
    memo = {}
    for m in root.modules():
        tensors = itertools.chain(m._parameters.values(), m._buffers.values())
        for t in tensors:
            if t is None or id(t) in memo:
                continue
            meta = torch.empty_like(t, device="meta")
            if isinstance(t, torch.nn.Parameter):
                meta = torch.nn.Parameter(meta, requires_grad=t.requires_grad)
            memo[id(t)] = meta
        for value in vars(m).values():
            # Cached activations (with a graph) refuse a deep copy.
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo.setdefault(id(value), value.detach())
    return copy.deepcopy(root, memo)
