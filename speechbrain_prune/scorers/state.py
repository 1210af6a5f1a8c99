"""Model-state snapshots: what scoring or a trial removal changes is put back.

Modes, buffers, ``.grad``, in-place structural changes and the random
state, each restored on leaving a ``with`` block.

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import itertools

import torch

from speechbrain_prune.handlers import handler_for


@contextlib.contextmanager
def scoring_state(root, eval_mode=True):
    """Restores modes, buffers and ``.grad`` of ``root`` on exit.

    Example
    -------
    >>> bn = torch.nn.BatchNorm1d(3).train()
    >>> with scoring_state(bn, eval_mode=False):
    ...     _ = bn(torch.rand(4, 3))
    >>> bn.running_mean.abs().sum().item(), bn.training
    (0.0, True)
    """
    modes = [(m, m.training) for m in root.modules()]
    buffers = [(b, b.detach().clone()) for b in root.buffers()]
    grads = [(p, p.grad) for p in root.parameters()]
    overridden = []
    if eval_mode:
        root.eval()
        # A layer whose eval mode has no backward (cuDNN RNNs) says through
        # its handler which mode computes the same and has one.
        for m in root.modules():
            handler = handler_for(m)
            if handler is None:
                continue
            for sub, attr, value in handler.scoring_overrides(m):
                overridden.append((sub, attr, getattr(sub, attr)))
                setattr(sub, attr, value)
    try:
        yield
    finally:
        for sub, attr, value in reversed(overridden):
            setattr(sub, attr, value)
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)
        for p, g in grads:
            p.grad = g


@contextlib.contextmanager
def restored(modules):
    """Undoes in-place changes to ``modules`` (values and structure).

    Parameter and buffer values are copied back, and every module's
    attribute dictionary (sub-modules, hooks, sizes, even its class) is
    put back as it was, while the parameter objects themselves stay the
    same, so optimizers and references remain valid. Used to measure a
    removal (masking, a dropped layer) and take it back.

    Example
    -------
    >>> lin = torch.nn.Linear(3, 2)
    >>> before = lin.weight.detach().clone()
    >>> with restored([lin]):
    ...     with torch.no_grad():
    ...         _ = lin.weight.zero_()
    ...     _ = lin.register_forward_hook(lambda *a: None)
    >>> torch.equal(lin.weight, before), len(lin._forward_hooks)
    (True, 0)
    """
    seen, saved = set(), []
    for top in modules:
        for m in top.modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            state = dict(m.__dict__)
            for key, value in state.items():
                if isinstance(value, dict):
                    state[key] = type(value)(value)
                elif isinstance(value, list):
                    state[key] = list(value)
            tensors = [
                (t, t.detach().clone())
                for t in itertools.chain(
                    m._parameters.values(), m._buffers.values()
                )
                if t is not None
            ]
            saved.append((m, m.__class__, state, tensors))
    try:
        yield
    finally:
        for m, cls, state, tensors in saved:
            m.__dict__.clear()
            m.__dict__.update(state)
            m.__class__ = cls
            with torch.no_grad():
                for t, value in tensors:
                    t.copy_(value)


class seeded:
    """Forks the RNG and seeds it, so repeated passes draw the same.

    The global random state is as it was after the block.

    Arguments
    ---------
    seed : int

    Example
    -------
    >>> with seeded(3):
    ...     a = torch.rand(2)
    >>> with seeded(3):
    ...     b = torch.rand(2)
    >>> torch.equal(a, b)
    True
    """

    def __init__(self, seed):
        self.seed = seed
        devices = []
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            devices = [torch.cuda.current_device()]
        self.fork = torch.random.fork_rng(devices=devices)

    def __enter__(self):
        self.fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self.fork.__exit__(*exc)
