"""Discovery of dependency groups from one forward pass.

Every module that has a handler is hooked (without descending into it);
one forward pass records the calls in execution order. Tensors are followed
by identity: the output of one hooked call that is the input of another
couples them, inside a ``Sequential`` as well as across a recipe's top-level
modules (``enc`` -> ``ctc_lin`` / ``dec``). Nothing is guessed: a channel
space that reaches a module without a handler, that is used by a tensor
operation outside every hooked module, or that leaves the traced forward,
makes its group non-prunable and the reason is kept.

Authors
 * speechbrain-prune team 2026
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.overrides import TorchFunctionMode

from speechbrain_prune.graph.group import (
    CONSUMER,
    DependencyGroup,
    Layout,
)
from speechbrain_prune.handlers import handler_for

# Tensor functions that only read metadata: harmless on a traced tensor.
_METADATA = {
    "size",
    "dim",
    "__get__",
    "__len__",
    "numel",
    "data_ptr",
    "is_floating_point",
    "element_size",
    "stride",
    "is_contiguous",
    "__format__",
    "__repr__",
}


class Space(NamedTuple):
    """A channel space: the group on a tensor's last axis and its layout."""

    group: DependencyGroup
    layout: Layout


@dataclass
class Call:
    """One recorded forward call of a hooked module."""

    name: str
    module: torch.nn.Module
    args: tuple
    kwargs: dict
    output: Any

    @property
    def main_output(self):
        """The output tensor (first element of a tuple output)."""
        out = self.output
        while isinstance(out, (tuple, list)) and out:
            out = out[0]
        return out if isinstance(out, torch.Tensor) else None


class GroupSet(OrderedDict):
    """Groups by id, in forward order.

    Example
    -------
    >>> import speechbrain as sb
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=8, input_size=4),
    ...     torch.nn.ReLU(),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=8),
    ... )
    >>> groups = discover_groups(model, torch.rand(1, 5, 4))
    >>> [(g.id, g.size, g.prunable) for g in groups.values()]
    [('0', 8, True), ('2', 2, False)]
    """

    #: Top-level modules (of a ``ModuleDict`` root) with parameters that
    #: the traced forward did not call.
    untraced = ()

    #: ``consumer -> producer``: top-level modules (of a ``ModuleDict``
    #: root) that the traced forward called on another top-level module's
    #: output; what a later forward that skips the consumer needs as
    #: ``couplings``.
    observed_couplings = {}

    def prunable(self):
        """Groups that may lose channels."""
        return [g for g in self.values() if g.prunable]

    def blocked(self):
        """Groups that may not, with their reasons."""
        return [g for g in self.values() if not g.prunable]

    def describe(self):
        """One line per group: id, size, prunable or why not."""
        lines = []
        for g in self.values():
            state = "prunable" if g.prunable else "; ".join(g.reasons)
            lines.append(f"{g.id} [{g.kind}, {g.size}]: {state}")
        return "\n".join(lines)


class _Context:
    """What handlers see while tracing: spaces of tensors and groups."""

    def __init__(self):
        self.groups = GroupSet()
        self._spaces = {}

    def space(self, tensor):
        """The channel space carried by ``tensor``, or None."""
        if not isinstance(tensor, torch.Tensor):
            return None
        return self._spaces.get(id(tensor))

    def group(self, gid, size, kind):
        """Returns group ``gid``, creating it on first use."""
        group = self.groups.get(gid)
        if group is None:
            group = DependencyGroup(gid, size, kind)
            self.groups[gid] = group
        elif group.size != size:
            raise RuntimeError(
                f"Group {gid} seen with sizes {group.size}, {size}"
            )
        return group

    def output(self, group, copies=1):
        """The space of an output that carries ``group`` ``copies`` times."""
        return Space(group, Layout(group.size, copies))

    def consume(self, space, member):
        """Adds a consumer member to the space's group."""
        if space is not None:
            space.group.add(member)

    def assign(self, tensor, space):
        if isinstance(tensor, torch.Tensor) and space is not None:
            if tensor.shape[-1] != space.layout.width:
                raise RuntimeError(
                    f"Group {space.group.id}: output width {tensor.shape[-1]} "
                    f"does not match its layout {space.layout}"
                )
            self._spaces[id(tensor)] = space


class _EscapeWatch(TorchFunctionMode):
    """Notes tensor operations applied outside every hooked module."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        st = self.state
        if st["depth"] == 0 and st["outputs"]:
            name = getattr(func, "__name__", str(func))
            if name not in _METADATA:
                for t in _tensors((args, kwargs)):
                    if id(t) in st["outputs"]:
                        st["escapes"].setdefault(id(t), name)
        return func(*args, **kwargs)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def hook_targets(root):
    """Modules to hook: handled ones, and unknown leaves.

    Returns
    -------
    list of (name, module, handler or None)
    """
    targets = []

    def visit(name, module):
        handler = handler_for(module)
        if handler is not None:
            targets.append((name, module, handler))
            return
        children = list(module.named_children())
        if not children:
            targets.append((name, module, None))
        for child_name, child in children:
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", root)
    return targets


def record_calls(root, run):
    """Runs ``run(root)`` with hooks; returns the calls and escapes.

    Arguments
    ---------
    root : torch.nn.Module
        Model (or ``ModuleDict`` of a recipe's modules) to trace.
    run : callable or torch.Tensor
        Performs one forward pass (``run(root)``); a tensor means
        ``root(tensor)``.

    Returns
    -------
    calls : list of Call
    escapes : dict
        ``id(tensor) -> name of the outside operation``.
    result : object
        What ``run`` returned.
    top_outputs : dict
        ``name -> output tensor`` of each top-level module of a
        ``ModuleDict`` root that was called.
    top_inputs : dict
        ``name -> name`` of the top-level module whose output it was
        called on (first tensor argument), where that is one.
    """
    if isinstance(run, torch.Tensor):
        example = run

        def run(m):
            return m(example)

    targets = hook_targets(root)
    state = {"depth": 0, "outputs": {}, "escapes": {}}
    calls = []
    handles = []

    def pre_hook(module, args, kwargs):
        state["depth"] += 1

    def make_hook(name):
        def hook(module, args, kwargs, output):
            state["depth"] -= 1
            if state["depth"] == 0:
                call = Call(name, module, args, kwargs, output)
                calls.append(call)
                out = call.main_output
                if out is not None:
                    state["outputs"][id(out)] = out

        return hook

    top_outputs = {}
    top_calls = []
    if isinstance(root, torch.nn.ModuleDict):
        for name, module in root.items():

            def top_hook(module, args, output, name=name):
                top_outputs[name] = Call(name, module, args, {}, output)
                top_calls.append(top_outputs[name])

            handles.append(module.register_forward_hook(top_hook))
    for name, module, _ in targets:
        handles.append(
            module.register_forward_pre_hook(pre_hook, with_kwargs=True)
        )
        handles.append(
            module.register_forward_hook(make_hook(name), with_kwargs=True)
        )
    try:
        with torch.no_grad(), _EscapeWatch(state):
            result = run(root)
    finally:
        for h in handles:
            h.remove()
    top = {k: c.main_output for k, c in top_outputs.items()}
    producer_of = {}
    inputs = {}
    for call in top_calls:  # in call order: producers come first
        first = next(iter(_tensors(call.args)), None)
        producer = producer_of.get(id(first))
        if producer is not None and producer != call.name:
            inputs[call.name] = producer
        if call.main_output is not None:
            producer_of[id(call.main_output)] = call.name
    return calls, state["escapes"], result, top, inputs


def discover_groups(root, run, couplings=None):
    """Finds all dependency groups of ``root`` from one forward pass.

    Arguments
    ---------
    root : torch.nn.Module
        A model, or a ``ModuleDict`` holding a recipe's modules.
    run : callable or torch.Tensor
        One forward pass: ``run(root)``, or an example input for
        ``root(input)``.
    couplings : dict, optional
        ``consumer -> producer``: top-level modules of a ``ModuleDict``
        root whose coupling the traced forward does not show, because the
        consumer is not called in it (e.g. a CTC head used only in some
        epochs). The consumer is connected to the producer's output as if
        it had been called on it.

    Returns
    -------
    GroupSet
        Groups in forward order; ``prunable()`` gives those that may lose
        channels, ``blocked()`` the others with the reason.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> model = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...               rnn_layers=1, rnn_neurons=6, dnn_blocks=1,
    ...               dnn_neurons=5).eval()
    >>> groups = discover_groups(model, torch.rand(1, 10, 20))
    >>> print(groups.describe())  # doctest: +NORMALIZE_WHITESPACE
    CNN.block_0.conv_1 [conv, 4]: prunable
    CNN.block_0.conv_2 [conv, 4]: prunable
    RNN.layer0 [rnn, 6]: prunable
    DNN.block_0.linear [dense, 5]: its channels leave the traced forward
    (no consumer: a model output)
    """
    calls, escapes, result, top, inputs = record_calls(root, run)
    couplings = dict(couplings or {})
    top_names = list(root.keys()) if hasattr(root, "keys") else []
    for consumer, producer in couplings.items():
        for name in (consumer, producer):
            if name not in top_names:
                raise KeyError(
                    f"couplings: {name!r} is not a top-level module; "
                    f"modules: {top_names}"
                )
        if producer not in top:
            raise ValueError(
                f"couplings: producer {producer!r} was not called in the "
                "traced forward, so its output is unknown"
            )
        if consumer not in top:
            calls.append(
                Call(consumer, root[consumer], (top[producer],), {}, None)
            )
    ctx = _Context()
    for call in calls:
        handler = handler_for(call.module)
        if handler is None:
            for t in _tensors((call.args, call.kwargs)):
                sp = ctx.space(t)
                if sp is not None:
                    sp.group.block(
                        f"feeds {call.name} ({type(call.module).__name__}), "
                        "a layer type without a pruning handler"
                    )
            continue
        ctx.assign(call.main_output, handler.trace(ctx, call))

    for key, op in escapes.items():
        for sp in list(ctx._spaces.items()):
            if sp[0] == key:
                sp[1].group.block(
                    f"its output is used by `{op}` outside any traced "
                    "module; call that operation inside a module or "
                    "exclude the group"
                )
    for t in _tensors(result):
        sp = ctx.space(t)
        if sp is not None and sp.group.consumers:
            sp.group.block("its output is returned by the traced forward")
    for g in ctx.groups.values():
        if not any(m.role == CONSUMER for m in g.members):
            g.block(
                "its channels leave the traced forward (no consumer: "
                "a model output)"
            )
    if isinstance(root, torch.nn.ModuleDict):
        ctx.groups.untraced = tuple(
            name
            for name, module in root.items()
            if name not in top
            and name not in couplings
            and any(True for _ in module.parameters())
        )
        ctx.groups.observed_couplings = dict(inputs)
    return ctx.groups
