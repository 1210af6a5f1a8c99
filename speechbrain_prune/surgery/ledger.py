"""Slicing of parameters and buffers, with a record of where values came from.

The optimizer state (Adam moments, momentum buffers, ...) of a parameter
must follow its values when channels are removed. Every slice made during
surgery goes through :func:`replace_tensor`, which records in a
:class:`SliceLedger` which original parameter a new one comes from and
which indices of every dimension it kept; repeated slices compose.

Authors
 * speechbrain-prune team 2026
"""

import torch


def select(tensor, index):
    """Indexes ``tensor`` with one LongTensor (or None = all) per dim.

    Example
    -------
    >>> t = torch.arange(12).reshape(3, 4)
    >>> select(t, [torch.tensor([0, 2]), None]).shape
    torch.Size([2, 4])
    """
    for dim, idx in enumerate(index):
        if idx is not None:
            tensor = tensor.index_select(dim, idx.to(tensor.device))
    return tensor


class SliceLedger:
    """Records ``new = original[index]`` for every parameter replaced.

    Example
    -------
    >>> lin = torch.nn.Linear(4, 3)
    >>> ledger = SliceLedger()
    >>> old = lin.weight
    >>> replace_tensor(lin, "weight", [torch.tensor([0, 2]), None], ledger)
    >>> replace_tensor(lin, "weight", [None, torch.tensor([1])], ledger)
    >>> orig, index = ledger.origin(lin.weight)
    >>> orig is old, [i.tolist() for i in index]
    (True, [[0, 2], [1]])
    """

    def __init__(self):
        self._origin = {}
        self._keep_alive = {}

    def record(self, old, new, index):
        """Notes that ``new`` holds ``old[index]`` (composing earlier ones)."""
        orig, base = self._origin.pop(id(old), (old, [None] * old.dim()))
        composed = []
        for dim in range(old.dim()):
            b = base[dim]
            i = index[dim] if dim < len(index) else None
            if i is None:
                composed.append(b)
            elif b is None:
                composed.append(i.cpu())
            else:
                composed.append(b[i.cpu()])
        self._origin[id(new)] = (orig, composed)
        self._keep_alive[id(new)] = new

    def origin(self, param):
        """``(original parameter, index per dim)`` or None if untouched."""
        return self._origin.get(id(param))

    def items(self):
        """``(new, original, index)`` for every replaced tensor."""
        for key, (orig, index) in self._origin.items():
            yield self._keep_alive[key], orig, index

    def __len__(self):
        return len(self._origin)

    def snapshot(self):
        """What :meth:`restore` needs to undo later records."""
        return dict(self._origin), dict(self._keep_alive)

    def restore(self, state):
        """Forgets the records made since :meth:`snapshot` gave ``state``.

        Example
        -------
        >>> lin, ledger = torch.nn.Linear(4, 3), SliceLedger()
        >>> state = ledger.snapshot()
        >>> replace_tensor(lin, "weight", [torch.tensor([0])], ledger)
        >>> ledger.restore(state)
        >>> len(ledger)
        0
        """
        self._origin, self._keep_alive = dict(state[0]), dict(state[1])


def replace_tensor(module, name, index, ledger=None):
    """Replaces parameter or buffer ``name`` of ``module`` by a slice of it.

    The new tensor is a compact copy, so the full-size one is freed once
    nothing else refers to it.

    Arguments
    ---------
    module : torch.nn.Module
        Owner of the tensor.
    name : str
        Attribute name of a parameter or buffer.
    index : list
        One LongTensor (kept indices) or None per dimension.
    ledger : SliceLedger, optional
        Where to record the replacement.

    Example
    -------
    >>> bn = torch.nn.BatchNorm1d(4)
    >>> replace_tensor(bn, "running_mean", [torch.tensor([1, 3])])
    >>> bn.running_mean.shape
    torch.Size([2])
    """
    old = getattr(module, name)
    if old is None:
        return
    data = select(old.detach(), index).clone()
    if isinstance(old, torch.nn.Parameter):
        new = torch.nn.Parameter(data, requires_grad=old.requires_grad)
        setattr(module, name, new)
        if ledger is not None:
            ledger.record(old, new, index)
    else:
        module._buffers[name] = data


def move_tensor(old, new_module, name, index, ledger=None):
    """Puts ``old[index]`` into ``new_module.name`` (for rebuilt modules)."""
    data = select(old.detach(), index).clone()
    new = torch.nn.Parameter(data, requires_grad=old.requires_grad)
    setattr(new_module, name, new)
    if ledger is not None:
        ledger.record(old, new, index)
