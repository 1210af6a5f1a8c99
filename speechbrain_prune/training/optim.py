"""Keeping the optimizer right after surgery: same object, new parameters.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.surgery.ledger import select


def remap_optimizer(optimizer, ledger, live_params, reset=False):
    """Points ``optimizer`` at the pruned parameters and slices its state.

    The optimizer object stays the same (learning-rate schedulers and the
    checkpointer keep referring to it). Every parameter replaced during
    surgery is swapped for its new version, and each per-parameter state
    tensor of the old shape (Adam ``exp_avg``/``exp_avg_sq``, Adadelta
    ``square_avg``/``acc_delta``, SGD ``momentum_buffer``, ...) is sliced
    with the same indices; scalars such as ``step`` are kept. Parameters
    that left the model (a removed layer) leave the optimizer.

    Arguments
    ---------
    optimizer : torch.optim.Optimizer
    ledger : SliceLedger
        From the surgery (where each new parameter came from).
    live_params : iterable of torch.nn.Parameter
        The model's parameters after surgery.
    reset : bool
        Drop the state of sliced parameters instead of slicing it.

    Example
    -------
    >>> from speechbrain_prune.surgery.ledger import SliceLedger, replace_tensor
    >>> lin = torch.nn.Linear(3, 4)
    >>> opt = torch.optim.Adam(lin.parameters())
    >>> lin(torch.rand(2, 3)).sum().backward(); opt.step()
    >>> ledger = SliceLedger()
    >>> replace_tensor(lin, "weight", [torch.tensor([0, 2])], ledger)
    >>> replace_tensor(lin, "bias", [torch.tensor([0, 2])], ledger)
    >>> remap_optimizer(opt, ledger, lin.parameters())
    >>> opt.state[lin.weight]["exp_avg"].shape
    torch.Size([2, 3])
    >>> opt.param_groups[0]["params"][0] is lin.weight
    True
    """
    live = {id(p) for p in live_params}
    # Entries whose new tensor left the model again (a layer removed after
    # its weights were sliced) must not bring it back.
    reverse = {
        id(orig): (new, index)
        for new, orig, index in ledger.items()
        if id(new) in live
    }
    seen = set()
    for group in optimizer.param_groups:
        kept = []
        for p in group["params"]:
            state = optimizer.state.pop(p, None)
            if id(p) in reverse:
                new, index = reverse[id(p)]
                if state and not reset:
                    optimizer.state[new] = {
                        k: _slice_state(v, p, index) for k, v in state.items()
                    }
                kept.append(new)
                seen.add(id(new))
            elif id(p) in live:
                if state is not None:
                    optimizer.state[p] = state
                kept.append(p)
                seen.add(id(p))
        group["params"] = kept


def _slice_state(value, param, index):
    if torch.is_tensor(value) and value.shape == param.shape and value.dim():
        return select(value, index).clone()
    return value


def optimizers_of(brain):
    """The optimizers a Brain holds (``optimizers_dict`` or ``optimizer``)."""
    found = []
    for opt in (getattr(brain, "optimizers_dict", None) or {}).values():
        if opt is not None and opt not in found:
            found.append(opt)
    opt = getattr(brain, "optimizer", None)
    if opt is not None and opt not in found:
        found.append(opt)
    return found
