"""Gradients of the recipe's loss, taken without touching ``.grad``.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.scorers.checks import check_loss


def loss_and_grads(loss_fn, batch, params, index):
    """Loss of one batch and its gradient for each parameter in ``params``.

    Uses ``torch.autograd.grad``, so ``.grad`` of the model is untouched.

    Returns
    -------
    loss : torch.Tensor
    grads : dict
        ``id(parameter) -> gradient`` (zeros where the loss does not
        depend on it).

    Example
    -------
    >>> lin = torch.nn.Linear(2, 1)
    >>> loss, grads = loss_and_grads(lambda b: lin(b).sum(),
    ...                              torch.ones(3, 2), [lin.weight], 0)
    >>> grads[id(lin.weight)].tolist(), lin.weight.grad
    ([[3.0, 3.0]], None)
    """
    with torch.enable_grad():
        loss = loss_fn(batch)
        check_loss(loss, index)
        if not params:
            return loss.detach(), {}
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    out = {}
    for p, g in zip(params, grads):
        out[id(p)] = torch.zeros_like(p) if g is None else g.detach()
    return loss.detach(), out
