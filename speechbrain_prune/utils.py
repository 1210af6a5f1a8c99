"""Small helpers shared by the pipeline steps.

Authors
 * speechbrain-prune team 2026
"""

import copy

import torch


def copy_module(module):
    """A deep copy of ``module`` that tolerates cached activations.

    Some modules keep tensors of their last forward as plain attributes
    (the attention's ``precomputed_enc_h``); when those carry an autograd
    graph, ``copy.deepcopy`` refuses them. They are copied detached.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 2)
    >>> lin.cache = lin(torch.rand(1, 2))  # has a grad_fn
    >>> twin = copy_module(lin)
    >>> twin.cache.grad_fn is None, twin.weight is lin.weight
    (True, False)
    """
    memo = {}
    for m in module.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)
