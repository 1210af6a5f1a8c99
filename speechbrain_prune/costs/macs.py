"""Counting multiply-accumulates (MACs) of one forward pass, exactly.

``torch.utils.flop_counter`` counts nothing for RNNs on the CPU, so every
torch layer type has a small counter, registered by type, called from a
forward hook with the real input and output of each call:

- ``Linear``: rows x in x out; ``Conv1d``/``Conv2d``: output elements x
  (in / groups) x kernel size;
- ``LSTM``/``GRU``/``RNN``: per layer and direction, steps x gates x H x
  (input + H), steps = batch x time (or the packed length);
- ``LSTMCell``/``GRUCell``/``RNNCell``: batch x gates x H x (input + H), per
  call, so an attentional decoder is counted per output step;
- ``LayerNorm``/``BatchNorm1d``: one MAC per element (the affine map).

A layer type of SpeechBrain or of a recipe that computes more than its
torch layers count adds the rest through its handler
(:meth:`ModuleHandler.mac_counters`: an attention's context product); one
made of torch layers (``LiGRU``: ``Linear`` layers and norms) needs
nothing. Element-wise gate arithmetic, activations and pooling are not
counted.

Authors
 * speechbrain-prune team 2026
"""

import copy
from collections import OrderedDict

import torch
from torch.nn.utils.rnn import PackedSequence

_COUNTERS = {}


def register_mac_counter(*types):
    """Decorator: ``fn(module, args, output) -> MACs`` for these types.

    For torch's own layer types (exact type match); layer types that have
    a handler say what they add through it.

    Example
    -------
    >>> @register_mac_counter(torch.nn.Bilinear)
    ... def _bilinear(m, args, out):
    ...     return out.numel() * m.in1_features * m.in2_features
    >>> count_macs(torch.nn.Bilinear(2, 3, 4), run=lambda m: m(
    ...     torch.rand(5, 2), torch.rand(5, 3)))
    120
    """

    def decorator(fn):
        for t in types:
            _COUNTERS[t] = fn
        return fn

    return decorator


@register_mac_counter(torch.nn.Linear)
def _linear(m, args, out):
    return args[0].numel() // m.in_features * m.in_features * m.out_features


@register_mac_counter(torch.nn.Conv1d, torch.nn.Conv2d)
def _conv(m, args, out):
    k = 1
    for s in m.kernel_size:
        k *= s
    return out.numel() * (m.in_channels // m.groups) * k


_GATES = {
    torch.nn.LSTM: 4,
    torch.nn.GRU: 3,
    torch.nn.RNN: 1,
    torch.nn.LSTMCell: 4,
    torch.nn.GRUCell: 3,
    torch.nn.RNNCell: 1,
}


@register_mac_counter(torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)
def _rnn(m, args, out):
    x = args[0]
    if isinstance(x, PackedSequence):
        steps = x.data.shape[0]
    else:
        steps = x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]
    dirs = 2 if m.bidirectional else 1
    h = m.hidden_size
    total = 0
    for k in range(m.num_layers):
        i = m.input_size if k == 0 else dirs * h
        total += steps * dirs * _GATES[type(m)] * h * (i + h)
    return total


@register_mac_counter(torch.nn.LSTMCell, torch.nn.GRUCell, torch.nn.RNNCell)
def _cell(m, args, out):
    batch = args[0].shape[0] if args[0].dim() == 2 else 1
    return (
        batch * _GATES[type(m)] * m.hidden_size * (m.input_size + m.hidden_size)
    )


@register_mac_counter(
    torch.nn.LayerNorm, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d
)
def _norm(m, args, out):
    return args[0].numel()


def _runner(model, input_shape, run):
    if run is not None:
        if isinstance(run, torch.Tensor):
            x = run
            return lambda m: m(x)
        return run
    if input_shape is None:
        raise ValueError("Give input_shape (e.g. (1, 1000, 40)) or run")
    x = torch.rand(*input_shape)
    return lambda m: m(x.to(next(m.parameters()).device))


def _counters(model):
    """``(name, module, fn)``: torch layers, and what handlers add."""
    # Imported here: the graph package, which handlers use, imports costs.
    from speechbrain_prune.handlers import handler_for

    out = []
    for name, module in model.named_modules():
        fn = _COUNTERS.get(type(module))
        if fn is not None:
            out.append((name, module, fn))
        handler = handler_for(module)
        if handler is None:
            continue
        for sub, fn in handler.mac_counters(module).items():
            qualified = ".".join(n for n in (name, sub) if n)
            out.append((qualified, module.get_submodule(sub), fn))
    return out


def macs_by_module(model, input_shape=None, run=None):
    """MACs of one forward pass, per counted leaf module.

    Arguments
    ---------
    model : torch.nn.Module
        Model or ``ModuleDict`` of modules.
    input_shape : tuple, optional
        Shape of a random input for ``model(input)``.
    run : callable or torch.Tensor, optional
        ``run(model)`` performs the forward pass instead.

    Returns
    -------
    OrderedDict
        ``qualified name -> MACs`` in call order (repeated calls summed).

    Example
    -------
    >>> import speechbrain as sb
    >>> net = sb.nnet.linear.Linear(n_neurons=4, input_size=3)
    >>> dict(macs_by_module(net, (2, 5, 3)))
    {'w': 120}
    """
    run = _runner(model, input_shape, run)
    counts = OrderedDict()
    handles = []
    for name, module, fn in _counters(model):

        def hook(m, args, out, name=name, fn=fn):
            counts[name] = counts.get(name, 0) + int(fn(m, args, out))

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            run(model)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts


def count_macs(model, input_shape=None, run=None):
    """Total multiply-accumulates of one forward pass (an int).

    Arguments
    ---------
    model : torch.nn.Module
        The model (or a ``ModuleDict`` with ``run``).
    input_shape : tuple, optional
        ``(batch, time, features)`` of a random input.
    run : callable or torch.Tensor, optional
        ``run(model)`` performs the forward pass instead.

    Returns
    -------
    int

    Example
    -------
    >>> import speechbrain as sb
    >>> lstm = sb.nnet.RNN.LSTM(hidden_size=8, input_size=5)
    >>> count_macs(lstm, (1, 10, 5)) == 10 * 4 * 8 * (5 + 8)
    True
    """
    return sum(macs_by_module(model, input_shape, run).values())


def count_params(model):
    """Number of parameters (all of them, trainable or not).

    Example
    -------
    >>> count_params(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters())


def count_cost(model, measure, run=None):
    """``model``'s cost in ``measure``: ``params``, or ``macs`` of one
    forward pass ``run(model)`` (which runs in whatever mode ``model`` is
    in: count on a copy when its statistics must not change).

    Example
    -------
    >>> net = torch.nn.Linear(3, 2)
    >>> count_cost(net, "params"), count_cost(net, "macs", torch.rand(4, 3))
    (8, 24)
    """
    if measure == "params":
        return count_params(model)
    if measure == "macs":
        return count_macs(model, run=run)
    raise ValueError(
        f"Cannot count {measure!r}: parameters (`params`) and MACs "
        "(`macs`) are counted, latency is measured (LatencySetup)"
    )


def group_costs(root, groups, run):
    """MACs and parameters that one channel of each prunable group costs.

    Measured by removing one channel from a copy of ``root`` and counting
    again, so it is exact for every layer type the counters know. The cost
    of a channel depends on the widths of the neighbouring groups: call it
    again after a removal.

    Arguments
    ---------
    root : torch.nn.Module
    groups : GroupSet
    run : callable or torch.Tensor
        One forward pass of ``root``.

    Returns
    -------
    dict
        ``group id -> {"macs": int, "params": int}`` per channel.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> x = torch.rand(1, 4, 3)
    >>> group_costs(model, discover_groups(model, x), x)
    {'0': {'macs': 20, 'params': 6}}
    """
    from speechbrain_prune.surgery import apply_removals
    from speechbrain_prune.utils import copy_module

    run = _runner(root, None, run)
    base_macs = count_macs(root, run=run)
    base_params = count_params(root)
    out = {}
    for group in groups.prunable():
        if group.size <= max(
            1, getattr(group, "min_size", 1)
        ):  # no channel can go
            out[group.id] = {"macs": 0, "params": 0}
            continue
        clone = copy_module(root)
        g = copy.deepcopy(group)
        apply_removals(clone, {g.id: g}, {g.id: [group.size - 1]})
        out[group.id] = {
            "macs": base_macs - count_macs(clone, run=run),
            "params": base_params - count_params(clone),
        }
    return out
