"""Handler base class and registry.

Authors
 * speechbrain-prune team 2026
"""

import torch

_REGISTRY = {}


def register_handler(*module_types):
    """Class decorator: the handler serves these module types.

    Arguments
    ---------
    *module_types : type
        ``torch.nn.Module`` subclasses (subclasses of them match too).

    Returns
    -------
    decorator

    Example
    -------
    >>> class Doubler(torch.nn.Module):
    ...     def forward(self, x):
    ...         return 2 * x
    >>> @register_handler(Doubler)
    ... class DoublerHandler(ModuleHandler):
    ...     def trace(self, ctx, call):
    ...         return ctx.space(call.args[0])
    >>> type(handler_for(Doubler())).__name__
    'DoublerHandler'
    """

    def decorator(cls):
        instance = cls()
        for t in module_types:
            _REGISTRY[t] = instance
        return cls

    return decorator


def handler_for(module):
    """The handler of ``module``'s type (or a base type), else None.

    Example
    -------
    >>> import speechbrain as sb
    >>> lin = sb.nnet.linear.Linear(n_neurons=4, input_size=3)
    >>> type(handler_for(lin)).__name__
    'LinearHandler'
    >>> handler_for(torch.nn.Conv3d(1, 1, 1)) is None
    True
    """
    for t in type(module).__mro__:
        if t in _REGISTRY:
            return _REGISTRY[t]
        if t is torch.nn.Module:
            break
    return None


def handled_type(module):
    """The registered type that gives ``module`` its handler, else None.

    A plan records it for every module it slices, so that it is refused on
    a model whose layer there is of another type (an LSTM plan on a GRU).

    Example
    -------
    >>> import speechbrain as sb
    >>> handled_type(sb.nnet.RNN.GRU(4, input_size=3)).__name__
    'GRU'
    >>> handled_type(torch.nn.Conv3d(1, 1, 1)) is None
    True
    """
    for t in type(module).__mro__:
        if t in _REGISTRY:
            return t
        if t is torch.nn.Module:
            break
    return None


def registered_types():
    """Names of all module types that have a handler."""
    return sorted(f"{t.__module__}.{t.__qualname__}" for t in _REGISTRY)


class ModuleHandler:
    """What every handler provides. Override what your layer needs.

    ``trace`` is called once per forward call of the module while groups
    are discovered; it reads the input's channel space with
    ``ctx.space(tensor)``, records members with ``ctx.consume`` /
    ``ctx.group`` and returns the channel space of the module's output
    (or None when the output starts no prunable space).
    """

    #: True for layers that own parameters which a group may slice.
    has_params = True

    #: ``role -> regular expressions`` of the slots this handler slices
    #: (what a replayed plan may name); None: not checked.
    slots = None

    def trace(self, ctx, call):
        """Records the members of this call; returns the output space."""
        raise NotImplementedError

    def prune(self, module, member, keep, ledger):
        """Slices ``member``'s tensors to the group channels in ``keep``."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot prune slot {member.slot!r}"
        )

    def mask(self, module, member, removed):
        """Takes ``removed`` channels out of the computation, in place.

        The default suits producers and per-channel members: once every
        consumer ignores a channel, its own values no longer matter.
        """

    def slot_size(self, module, member):
        """Current number of channels (producers) or columns (consumers)."""
        raise NotImplementedError

    def min_channels(self, module, member):
        """Fewest channels of the group this member lets it keep (1)."""
        return 1

    def param_slices(self, module, member):
        """Parameters of ``member``, and where each channel sits in them.

        Returns
        -------
        list of (torch.nn.Parameter, dim, index)
            ``index`` is a LongTensor ``(channels, k)``: the ``k`` positions
            on axis ``dim`` that belong to each group channel. Importance
            scorers aggregate weights and gradients over these.
        """
        return []

    def remove_layer(self, module, index, ledger):
        """Removes one whole layer (depth pruning), where supported."""
        raise NotImplementedError(
            f"{type(module).__name__} has no removable layers"
        )

    # Depth -----------------------------------------------------------------
    def num_layers(self, module):
        """Layers :meth:`remove_layer` may be asked for (0: none)."""
        return 0

    def widths(self, module):
        """``(input width, output width)`` of a layer that maps one to the
        other (linear, conv, RNN), None for one that keeps widths (norms,
        activations). A block can go when exactly one of its layers maps
        a width, to the same width.
        """
        return None

    # Costs -----------------------------------------------------------------
    def mac_counters(self, module):
        """MACs the layer computes outside torch's own layer types.

        Returns
        -------
        dict
            ``sub-module name -> fn(sub_module, args, output) -> MACs``
            (``""``: ``module`` itself), called after every call of that
            sub-module. Its own sub-modules are counted as well, by their
            own counters: count only what they do not (an attention's
            context product, not its linear layers). Default: nothing,
            for a layer made of torch layers (``Linear``, ``LSTM``,
            norms, ...), which :mod:`speechbrain_prune.costs.macs` counts.
        """
        return {}

    # Scoring ---------------------------------------------------------------
    def tap(self, module, member, taps):
        """Where a consumer member reads its group's channels.

        Used by the activation scorer, which hooks the input of every
        consumer.

        Arguments
        ---------
        module : torch.nn.Module
        member : Member
            A consumer member of ``module``.
        taps : Taps
            The scoring run's hooks; ``taps.enter(key, context)`` enters a
            context manager once per key until scoring ends (a module
            temporarily run layer by layer).

        Returns
        -------
        (torch.nn.Module, callable)
            The module whose forward pre-hook sees the channels, and
            ``getter(args, kwargs)`` that picks the tensor. Default:
            ``module`` itself and its first argument.
        """
        return module, first_argument

    def scoring_overrides(self, module):
        """``(sub-module, attribute, value)`` set while scoring in eval mode.

        Scores are taken in eval mode, yet gradient scorers run a backward
        pass; a layer whose eval mode has no backward (cuDNN RNNs) asks
        here for a mode that computes the same and has one. Restored
        afterwards. Default: none.
        """
        return []


def channel_index(member, size):
    """``(size, k)`` positions per channel: the layout's, or one each."""
    if member.layout is None:
        return torch.arange(size)[:, None]
    return member.layout.index_matrix()


def positions(member, keep):
    """Tensor positions of the channels in ``keep`` for ``member``."""
    if member.layout is None:
        return keep
    return member.layout.positions(keep)


def first_argument(args, kwargs):
    """The first positional argument of a call, else the first keyword one.

    Example
    -------
    >>> first_argument((), {"x": 3})
    3
    """
    return args[0] if args else next(iter(kwargs.values()), None)
