"""The masked reference: removal without slicing, to check surgery against.

A copy of the unpruned model in which removed channels are taken out of
every computation they take part in: consumers ignore them (their input
columns, recurrent columns included, are zeroed) and joint normalisations
compute their statistics over kept channels only. Plain weight zeroing is
not such a reference (a zeroed channel still counts in a LayerNorm's mean
and variance, and an inner BatchNorm turns it into its beta).

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.handlers import handler_for
from speechbrain_prune.utils import copy_module


def masked_reference(root, groups, removals):
    """A masked copy of ``root`` that computes what the pruned model does.

    Arguments
    ---------
    root : torch.nn.Module
        Unpruned model (left untouched).
    groups : GroupSet
        Its groups.
    removals : dict
        ``group id -> removed channel indices``.

    Returns
    -------
    torch.nn.Module
        The masked copy; compare its outputs at kept positions.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.normalization.LayerNorm(input_size=6),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> x = torch.rand(1, 4, 3)
    >>> groups = discover_groups(model, x)
    >>> ref = masked_reference(model, groups, {"0": [0, 3]})
    >>> _ = apply_removals(model, groups, {"0": [0, 3]})
    >>> torch.allclose(ref(x), model(x), atol=1e-6)
    True
    """
    ref = copy_module(root)
    for gid, removed in removals.items():
        removed = torch.as_tensor(removed, dtype=torch.long)
        if removed.numel() == 0:
            continue
        for member in groups[gid].members:
            module = ref.get_submodule(member.module)
            handler_for(module).mask(module, member, removed)
    return ref
