"""Layers that leave channels where they are: activations, dropout, pooling.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb
import torch

from speechbrain_prune.handlers.base import ModuleHandler, register_handler

ELEMENTWISE = (
    torch.nn.Identity,
    torch.nn.ReLU,
    torch.nn.LeakyReLU,
    torch.nn.ReLU6,
    torch.nn.ELU,
    torch.nn.SELU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Mish,
    torch.nn.Tanh,
    torch.nn.Sigmoid,
    torch.nn.Hardtanh,
    torch.nn.Softplus,
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.AlphaDropout,
    sb.nnet.dropout.Dropout2d,
)


@register_handler(*ELEMENTWISE)
class ElementwiseHandler(ModuleHandler):
    """Element-wise layers: the output carries the input's channels.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=3, input_size=2),
    ...     torch.nn.LeakyReLU(), torch.nn.Dropout(0.1),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=3))
    >>> groups = discover_groups(model.eval(), torch.rand(1, 4, 2))
    >>> groups["0"].prunable
    True
    """

    has_params = False

    def trace(self, ctx, call):
        return ctx.space(call.args[0])


@register_handler(sb.nnet.pooling.Pooling1d, sb.nnet.pooling.Pooling2d)
class PoolingHandler(ModuleHandler):
    """SpeechBrain pooling over time / frequency keeps the channel axis.

    Pooling along the channel axis (the last one) mixes channels: the
    group is then blocked rather than mis-pruned.
    """

    has_params = False

    def trace(self, ctx, call):
        x = call.args[0]
        space = ctx.space(x)
        axes = call.module.pool_axis
        axes = axes if isinstance(axes, (tuple, list)) else (axes,)
        if space is not None and any(a % x.dim() == x.dim() - 1 for a in axes):
            space.group.block(f"{call.name} pools over the channel axis")
            return None
        return space
