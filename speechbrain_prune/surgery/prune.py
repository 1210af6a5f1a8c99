"""Applying removals to a model: channels of groups, whole layers, blocks.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.surgery.ledger import SliceLedger


def _as_index(removed, size, gid, min_size=1):
    idx = torch.as_tensor(removed, dtype=torch.long).flatten()
    if idx.numel() and (idx.min() < 0 or idx.max() >= size):
        raise ValueError(
            f"Group {gid} has {size} channels; removal indices must lie in "
            f"0..{size - 1}, got {idx.min().item()}..{idx.max().item()}"
        )
    if len(set(idx.tolist())) != idx.numel():
        raise ValueError(f"Group {gid}: repeated removal indices")
    if size - idx.numel() < min_size:
        raise ValueError(
            f"Group {gid}: removing {idx.numel()} of {size} channels leaves "
            f"fewer than {min_size}, the fewest this layer can keep "
            "(remove a whole layer instead)"
        )
    return idx


def keep_from_removed(removed, size):
    """Sorted kept indices given removed ones.

    Example
    -------
    >>> keep_from_removed(torch.tensor([1, 3]), 5).tolist()
    [0, 2, 4]
    """
    mask = torch.ones(size, dtype=torch.bool)
    mask[removed] = False
    return torch.nonzero(mask).flatten()


def apply_removals(root, groups, removals, ledger=None):
    """Physically removes channels from groups of ``root``.

    Arguments
    ---------
    root : torch.nn.Module
        The traced root (model or ``ModuleDict`` of a recipe's modules).
    groups : GroupSet
        Groups of ``root`` (from :func:`discover_groups` or a plan).
    removals : dict
        ``group id -> indices of the channels to remove``.
    ledger : SliceLedger, optional
        Receives where every new parameter came from (optimizer remap).

    Returns
    -------
    SliceLedger

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> groups = discover_groups(model, torch.rand(1, 4, 3))
    >>> ledger = apply_removals(model, groups, {"0": [1, 4]})
    >>> groups["0"].size, len(ledger)
    (4, 3)
    """
    from speechbrain_prune.handlers import handler_for

    ledger = SliceLedger() if ledger is None else ledger
    checked = []
    for gid, removed in removals.items():
        if gid not in groups:
            raise KeyError(f"No group {gid!r}; groups: {list(groups)}")
        group = groups[gid]
        if not group.prunable:
            raise ValueError(
                f"Group {gid} may not be pruned: {'; '.join(group.reasons)}"
            )
        checked.append(
            (group, _as_index(removed, group.size, gid, group.min_size))
        )
    for group, removed in checked:
        if removed.numel() == 0:
            continue
        keep = keep_from_removed(removed, group.size)
        for member in group.members:
            module = root.get_submodule(member.module)
            handler_for(module).prune(module, member, keep, ledger)
        group.size = len(keep)
        for member in group.members:
            if member.layout is not None:
                member.layout = member.layout.resized(len(keep))
    return ledger


def remove_rnn_layer(root, module_name, layer, ledger=None):
    """Removes layer ``layer`` of the RNN ``module_name`` (depth pruning).

    The layer's consumer then reads the layer's input directly, so the
    layer must map a width to the same width (true for every layer but
    the first of a uniform stack).

    Example
    -------
    >>> import speechbrain as sb
    >>> net = sb.nnet.RNN.LSTM(4, input_size=3, num_layers=3)
    >>> root = torch.nn.ModuleDict({"rnn": net})
    >>> _ = remove_rnn_layer(root, "rnn", 1)
    >>> net.rnn.num_layers
    2
    """
    from speechbrain_prune.handlers import handler_for

    ledger = SliceLedger() if ledger is None else ledger
    module = root.get_submodule(module_name)
    handler = handler_for(module)
    if handler is None:
        raise TypeError(
            f"{module_name} ({type(module).__name__}) has no handler"
        )
    handler.remove_layer(module, layer, ledger)
    return ledger


def remove_block(root, block_name):
    """Removes a whole block (e.g. a CRDNN ``DNN_Block``) from its container.

    The block must contain exactly one width-changing layer whose input
    and output widths agree, so that the next layer reads the block's input
    unchanged.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> m = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4], rnn_layers=1,
    ...           rnn_neurons=4, dnn_blocks=2, dnn_neurons=8)
    >>> remove_block(m, "DNN.block_1")
    >>> list(m.DNN.keys())
    ['block_0']
    """
    parent_name, _, child = block_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    block = parent.get_submodule(child)
    widths = layer_widths(block)
    if len(widths) != 1 or widths[0][0] != widths[0][1]:
        raise ValueError(
            f"Block {block_name} maps widths {widths}; only a block with one "
            "layer whose input and output widths agree can be removed"
        )
    if not isinstance(parent, torch.nn.ModuleDict):
        raise TypeError(f"{parent_name} is not a container blocks can leave")
    if len(parent) == 1:
        kind = parent_name.rpartition(".")[2] or "container's"
        raise ValueError(
            f"Block {block_name} is the last {kind} block; it cannot be removed"
        )
    del parent[child]


def layer_widths(module):
    """``(in, out)`` of every width-mapping layer in ``module``.

    What each layer maps is its handler's answer
    (:meth:`ModuleHandler.widths`); layers without a handler are looked
    into.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import DNN_Block
    >>> layer_widths(DNN_Block(input_shape=(1, 5, 4), neurons=6))
    [(4, 6)]
    """
    from speechbrain_prune.handlers import handler_for

    handler = handler_for(module)
    if handler is not None:
        found = handler.widths(module)
        return [] if found is None else [found]
    out = []
    for child in module.children():
        out += layer_widths(child)
    return out
