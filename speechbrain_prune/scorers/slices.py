"""Slice algebra: where each group channel sits in parameters, sums over it.

A handler says where each channel of a member sits in its parameters
(:meth:`ModuleHandler.param_slices`); scorers combine weights and
gradients over those positions.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.handlers import handler_for

AGGREGATES = ("sum", "mean", "max")


def aggregate_slices(per_slice, how):
    """Combines per-parameter channel scores into one per channel.

    Example
    -------
    >>> a, b = torch.tensor([1.0, 4.0]), torch.tensor([3.0, 0.0])
    >>> aggregate_slices([a, b], "sum").tolist()
    [4.0, 4.0]
    >>> aggregate_slices([a, b], "max").tolist()
    [3.0, 4.0]
    """
    stacked = torch.stack(per_slice)
    if how == "sum":
        return stacked.sum(0)
    if how == "mean":
        return stacked.mean(0)
    return stacked.max(0).values


def group_slices(root, group):
    """Every ``(parameter, dim, index)`` of the group's members.

    ``index`` is ``(size, k)``: the positions of each channel on ``dim``
    (see :meth:`ModuleHandler.param_slices`).

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=3, input_size=2),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=3))
    >>> groups = discover_groups(model, torch.rand(1, 4, 2))
    >>> [(tuple(p.shape), d) for p, d, _ in group_slices(model, groups["0"])]
    [((3, 2), 0), ((3,), 0), ((2, 3), 1)]
    """
    out = []
    for member in group.members:
        module = root.get_submodule(member.module)
        handler = handler_for(module)
        if handler is None:
            continue
        for p, dim, index in handler.param_slices(module, member):
            if index.shape[0] != group.size:
                raise RuntimeError(
                    f"Group {group.id}: {member.module} ({member.slot}) "
                    f"slices {index.shape[0]} channels, the group has "
                    f"{group.size}; rediscover the groups after surgery"
                )
            out.append((p, dim, index))
    return out


def channel_sum(tensor, dim, index):
    """Sum of ``tensor`` over every entry that belongs to each channel.

    Arguments
    ---------
    tensor : torch.Tensor
        A parameter-shaped tensor (weights, gradients, their product).
    dim : int
        The axis that carries the channels.
    index : torch.Tensor
        ``(size, k)`` positions of each channel on ``dim``.

    Returns
    -------
    torch.Tensor
        ``(size,)``.

    Example
    -------
    >>> t = torch.arange(8.0).reshape(2, 4)
    >>> channel_sum(t, 1, torch.tensor([[0, 2], [1, 3]])).tolist()
    [12.0, 16.0]
    """
    per_pos = tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1).sum(1)
    return per_pos[index.to(per_pos.device)].sum(1)


def slice_params(slices_by_group):
    """Distinct trainable parameters among all the groups' slices.

    Example
    -------
    >>> w = torch.nn.Parameter(torch.ones(2, 2))
    >>> idx = torch.tensor([[0], [1]])
    >>> len(slice_params({"a": [(w, 0, idx)], "b": [(w, 1, idx)]}))
    1
    """
    params = {}
    for slices in slices_by_group.values():
        for p, _, _ in slices:
            if p.requires_grad:
                params.setdefault(id(p), p)
    return list(params.values())
