"""A pruned model written as YAML of stock SpeechBrain classes.

After pruning, layers of one ``CRDNN`` have widths that its constructor
cannot express (one ``rnn_neurons`` and one ``dnn_neurons`` for all
layers; surgery's ``StackedRNN`` / ``NonUniformLiGRU`` for RNN layers of
different widths). Every layer is still a stock module, though, so the
model is written as nested ``speechbrain.nnet.containers.Sequential``
objects with the same child names, holding the stock layers with their
pruned sizes; RNNs whose layers differ in width become a ``Sequential`` of
one-layer RNNs. :func:`to_stock` returns that YAML node and the map from
the pruned model's state-dict keys to the composition's, and
:func:`check_stock` builds the composition, loads the mapped weights
strictly (every tensor used exactly once) and compares the outputs.

A module type is one small writer registered with :func:`writes`; a module
without a writer raises :class:`ExportError` naming it.

Authors
 * speechbrain-prune team 2026
"""

import io

import speechbrain as sb
import torch
import yaml
from speechbrain.lobes.features import Fbank
from speechbrain.nnet.RNN import GRU, LSTM, RNN, LiGRU
from speechbrain.processing.features import InputNormalization

from speechbrain_prune.surgery.modules import NonUniformLiGRU, StackedRNN

SEQUENTIAL = "speechbrain.nnet.containers.Sequential"


class ExportError(ValueError):
    """A model (or part of it) cannot be written with stock classes."""


class New:
    """A ``!new:`` node of HyperPyYAML: a class and its keyword arguments.

    Example
    -------
    >>> print(New("torch.nn.Dropout", {"p": 0.1}).to_yaml("drop"))
    drop: !new:torch.nn.Dropout
        p: 0.1
    <BLANKLINE>
    """

    def __init__(self, target, kwargs=None):
        self.target = target
        self.kwargs = dict(kwargs or {})

    def to_yaml(self, key, indent=0):
        """The node as YAML text under ``key``."""
        return yaml_entry(key, self, indent)


def yaml_entry(key, value, indent=0):
    """``key: value`` as HyperPyYAML text (nodes, mappings, scalars).

    Example
    -------
    >>> print(yaml_entry("modules", {"encoder": Ref("encoder")}), end="")
    modules:
        encoder: !ref <encoder>
    """
    out = io.StringIO()
    _write(out, key, value, indent)
    return out.getvalue()


class Ref:
    """A ``!ref <key>`` value."""

    def __init__(self, key):
        self.key = key


class Name:
    """A ``!name:`` value (a class or function, not called)."""

    def __init__(self, target, kwargs=None):
        self.target = target
        self.kwargs = dict(kwargs or {})


def _key(key):
    key = str(key)
    return key if key.isidentifier() else f'"{key}"'


def _scalar(value):
    if isinstance(value, Ref):
        return f"!ref <{value.key}>"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return {True: "True", False: "False", None: "null"}[value]
    if isinstance(value, float):
        return repr(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.strip().removesuffix("...").strip()


def _write(out, key, value, indent):
    pad = " " * indent
    if isinstance(value, (New, Name)):
        tag = "new" if isinstance(value, New) else "name"
        out.write(f"{pad}{_key(key)}: !{tag}:{value.target}\n")
        for k, v in value.kwargs.items():
            _write(out, k, v, indent + 4)
    elif isinstance(value, dict):
        out.write(f"{pad}{_key(key)}:\n")
        for k, v in value.items():
            _write(out, k, v, indent + 4)
    elif isinstance(value, list) and any(
        isinstance(v, (New, Name, dict)) for v in value
    ):
        raise ExportError(f"{key}: lists of objects are not written")
    else:
        out.write(f"{pad}{_key(key)}: {_scalar(value)}\n")


# Writers -------------------------------------------------------------------
WRITERS = {}


def writes(*types):
    """Registers a writer ``f(module, ctx, name) -> (New, keymap)``."""

    def register(fn):
        for t in types:
            WRITERS[t] = fn
        return fn

    return register


class Context:
    """What writers may read: input shapes recorded in one forward pass."""

    def __init__(self, shapes=None):
        self.shapes = shapes or {}

    def shape(self, name):
        """Recorded input shape of submodule ``name`` (or None)."""
        return self.shapes.get(name)


def to_stock(module, ctx=None, name=""):
    """``(New node, keymap)`` of ``module`` written with stock classes.

    ``keymap`` maps each key of ``module.state_dict()`` to the key the
    composition built from the node expects.

    Example
    -------
    >>> lin = sb.nnet.linear.Linear(n_neurons=3, input_size=4)
    >>> node, keymap = to_stock(lin)
    >>> print(node.to_yaml("output"), end="")
    output: !new:speechbrain.nnet.linear.Linear
        n_neurons: 3
        input_size: 4
        bias: True
        max_norm: null
        combine_dims: False
    >>> sorted(keymap.items())
    [('w.bias', 'w.bias'), ('w.weight', 'w.weight')]
    """
    ctx = ctx or Context()
    for cls in type(module).__mro__:
        if cls in WRITERS:
            return WRITERS[cls](module, ctx, name)
    raise ExportError(
        f"{name or 'the model'}: no stock SpeechBrain equivalent is known "
        f"for {type(module).__module__}.{type(module).__qualname__}; "
        "write one in speechbrain_prune/export/architecture.py"
    )


def identity_keys(module):
    """Keymap of a stock module whose keys do not change."""
    return {k: k for k in module.state_dict()}


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else key


def _children(module, ctx, name):
    kwargs, keymap = {}, {}
    for cname, child in module.named_children():
        node, ckeys = to_stock(child, ctx, _join(name, cname))
        kwargs[cname] = node
        keymap.update(
            {_join(cname, k): _join(cname, v) for k, v in ckeys.items()}
        )
    own = set(module.state_dict()) - set(keymap)
    if own:
        raise ExportError(f"{name}: tensors outside any child: {sorted(own)}")
    return kwargs, keymap


@writes(sb.nnet.containers.Sequential)
def _sequential(module, ctx, name):
    """Any SpeechBrain ``Sequential`` (``CRDNN``, ``CNN_Block``, ...)."""
    if type(module) not in (
        sb.nnet.containers.Sequential,
        sb.lobes.models.CRDNN.CRDNN,
        sb.lobes.models.CRDNN.CNN_Block,
        sb.lobes.models.CRDNN.DNN_Block,
    ):
        raise ExportError(
            f"{name}: {type(module).__qualname__} overrides Sequential; "
            "its forward may differ"
        )
    kwargs, keymap = _children(module, ctx, name)
    if not kwargs:
        return New("torch.nn.Identity"), {}
    return New(SEQUENTIAL, kwargs), keymap


@writes(sb.nnet.CNN.Conv2d)
def _conv2d(m, ctx, name):
    conv = m.conv
    if hasattr(conv, "parametrizations"):
        raise ExportError(f"{name}: weight norm: remove it before export")
    kwargs = {"out_channels": conv.out_channels}
    kwargs["kernel_size"] = list(m.kernel_size)
    if m.unsqueeze:  # a (batch, time, feats) input: one channel
        shape = ctx.shape(name)
        kwargs["input_shape"] = [None, None, shape[-1] if shape else None]
    else:
        kwargs["in_channels"] = conv.in_channels
    kwargs.update(
        stride=list(m.stride),
        dilation=list(m.dilation),
        padding=m.padding,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=m.padding_mode,
        max_norm=m.max_norm,
        swap=m.swap,
        skip_transpose=m.skip_transpose,
    )
    return New("speechbrain.nnet.CNN.Conv2d", kwargs), identity_keys(m)


@writes(sb.nnet.normalization.LayerNorm)
def _layernorm(m, ctx, name):
    kwargs = {
        "input_size": list(m.norm.normalized_shape),
        "eps": m.norm.eps,
        "elementwise_affine": m.norm.elementwise_affine,
    }
    return (
        New("speechbrain.nnet.normalization.LayerNorm", kwargs),
        identity_keys(m),
    )


@writes(sb.nnet.normalization.BatchNorm1d)
def _batchnorm(m, ctx, name):
    n = m.norm
    kwargs = {
        "input_size": n.num_features,
        "eps": n.eps,
        "momentum": n.momentum,
        "affine": n.affine,
        "track_running_stats": n.track_running_stats,
        "combine_batch_time": m.combine_batch_time,
        "skip_transpose": m.skip_transpose,
    }
    return (
        New("speechbrain.nnet.normalization.BatchNorm1d", kwargs),
        identity_keys(m),
    )


@writes(sb.nnet.linear.Linear)
def _linear(m, ctx, name):
    kwargs = {
        "n_neurons": m.w.out_features,
        "input_size": m.w.in_features,
        "bias": m.w.bias is not None,
        "max_norm": m.max_norm,
        "combine_dims": m.combine_dims,
    }
    return New("speechbrain.nnet.linear.Linear", kwargs), identity_keys(m)


@writes(sb.nnet.embedding.Embedding)
def _embedding(m, ctx, name):
    kwargs = {
        "num_embeddings": m.num_embeddings,
        "embedding_dim": m.embedding_dim,
        "consider_as_one_hot": m.consider_as_one_hot,
        "blank_id": m.blank_id,
    }
    return (
        New("speechbrain.nnet.embedding.Embedding", kwargs),
        identity_keys(m),
    )


@writes(sb.nnet.pooling.Pooling1d)
def _pooling1d(m, ctx, name):
    p = m.pool_layer
    two_d = isinstance(p, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))

    def last(v):
        return v[-1] if isinstance(v, (tuple, list)) else v

    kwargs = {
        "pool_type": "max" if "Max" in type(p).__name__ else "avg",
        "kernel_size": last(p.kernel_size),
        "input_dims": 4 if two_d else 3,
        "pool_axis": m.pool_axis,
        "ceil_mode": p.ceil_mode,
        "padding": last(p.padding),
        "stride": last(p.stride),
    }
    if hasattr(p, "dilation"):
        kwargs["dilation"] = last(p.dilation)
    return New("speechbrain.nnet.pooling.Pooling1d", kwargs), {}


@writes(sb.nnet.pooling.Pooling2d)
def _pooling2d(m, ctx, name):
    kwargs = {
        "pool_type": m.pool_type,
        "kernel_size": list(m.kernel_size),
        "pool_axis": list(m.pool_axis),
        "ceil_mode": m.ceil_mode,
        "padding": m.padding,
        "dilation": m.dilation,
        "stride": list(m.stride),
    }
    return New("speechbrain.nnet.pooling.Pooling2d", kwargs), {}


@writes(sb.nnet.dropout.Dropout2d)
def _dropout2d(m, ctx, name):
    return New(
        "speechbrain.nnet.dropout.Dropout2d", {"drop_rate": m.drop_rate}
    ), {}


@writes(torch.nn.Dropout)
def _dropout(m, ctx, name):
    return New("torch.nn.Dropout", {"p": m.p}), {}


#: Parameter-free torch activations and their constructor arguments.
ACTIVATIONS = {
    torch.nn.LeakyReLU: ("negative_slope",),
    torch.nn.ReLU: (),
    torch.nn.Tanh: (),
    torch.nn.Sigmoid: (),
    torch.nn.ELU: ("alpha",),
    torch.nn.GELU: ("approximate",),
    torch.nn.SiLU: (),
    torch.nn.Identity: (),
}


@writes(*ACTIVATIONS)
def _activation(m, ctx, name):
    cls = type(m)
    kwargs = {a: getattr(m, a) for a in ACTIVATIONS[cls]}
    return New(f"torch.nn.{cls.__name__}", kwargs), {}


# RNNs ----------------------------------------------------------------------
def _rnn_input(m, ctx, name, input_size):
    """``input_shape`` when the RNN flattens 4-D input, else ``input_size``."""
    if not m.reshape:
        return {"input_size": input_size}
    shape = ctx.shape(name)
    if shape is not None and len(shape) == 4:
        return {"input_shape": [None, None, shape[2], shape[3]]}
    return {"input_shape": [None, None, 1, input_size]}


@writes(LSTM, GRU, RNN)
def _torch_rnn(m, ctx, name):
    """SpeechBrain's LSTM/GRU/RNN; a ``StackedRNN`` becomes a Sequential."""
    target = f"speechbrain.nnet.RNN.{type(m).__name__}"
    if type(m) not in (LSTM, GRU, RNN):
        raise ExportError(f"{name}: unknown RNN subclass {type(m)}")

    def one(rnn, num_layers, dropout, first):
        if not rnn.batch_first:
            raise ExportError(f"{name}: expected a batch-first RNN")
        kwargs = {"hidden_size": rnn.hidden_size}
        if first:
            kwargs.update(_rnn_input(m, ctx, name, rnn.input_size))
        else:
            kwargs["input_size"] = rnn.input_size
        kwargs.update(
            num_layers=num_layers,
            bias=rnn.bias,
            dropout=dropout,
            re_init=False,  # weights are loaded; no init to reproduce
            bidirectional=rnn.bidirectional,
        )
        if type(m) is RNN:
            kwargs["nonlinearity"] = rnn.nonlinearity
        return New(target, kwargs)

    if not isinstance(m.rnn, StackedRNN):
        node = one(m.rnn, m.rnn.num_layers, m.rnn.dropout, True)
        return node, identity_keys(m)
    # Layers of different widths: one-layer RNNs in a Sequential, with the
    # dropout that the multi-layer module applies between layers.
    kwargs, keymap = {}, {}
    for i, layer in enumerate(m.rnn.layers):
        if i and m.rnn.dropout > 0:
            kwargs[f"dropout_{i - 1}"] = New(
                "torch.nn.Dropout", {"p": m.rnn.dropout}
            )
        kwargs[f"layer_{i}"] = one(layer, 1, 0.0, i == 0)
        for k in layer.state_dict():
            keymap[f"rnn.layers.{i}.{k}"] = f"layer_{i}.rnn.{k}"
    return New(SEQUENTIAL, kwargs), keymap


@writes(LiGRU, NonUniformLiGRU)
def _ligru(m, ctx, name):
    """SpeechBrain's LiGRU; layers of different widths: a Sequential."""

    def one(layers, first):
        layer = layers[0]
        if first and m.reshape:
            shape = ctx.shape(name)
            feats = (
                [shape[2], shape[3]]
                if shape is not None and len(shape) == 4
                else [1, layer.input_size]
            )
        else:
            feats = [layer.input_size]
        kwargs = {
            "hidden_size": layer.hidden_size,
            # LiGRU needs a batch size here; it adapts to the real one.
            "input_shape": [1, None] + feats,
            "nonlinearity": m.nonlinearity,
            "normalization": m.normalization,
            "num_layers": len(layers),
            "bias": m.bias,
            "dropout": m.dropout,
            "re_init": False,
            "bidirectional": m.bidirectional,
        }
        return New("speechbrain.nnet.RNN.LiGRU", kwargs)

    widths = {layer.hidden_size for layer in m.rnn}
    if len(widths) == 1:
        return one(list(m.rnn), True), identity_keys(m)
    kwargs, keymap = {}, {}
    for i, layer in enumerate(m.rnn):
        kwargs[f"layer_{i}"] = one([layer], i == 0)
        for k in layer.state_dict():
            keymap[f"rnn.{i}.{k}"] = f"layer_{i}.rnn.0.{k}"
    return New(SEQUENTIAL, kwargs), keymap


@writes(sb.nnet.RNN.AttentionalRNNDecoder)
def _attentional_decoder(m, ctx, name):
    attn = m.attn
    enc = getattr(attn, "mlp_enc", None) or getattr(attn, "key_linear")
    cell = m.rnn.rnn_cells[0]
    kwargs = {
        "rnn_type": m.rnn_type,
        "attn_type": m.attn_type,
        "hidden_size": m.hidden_size,
        "attn_dim": m.attn_dim,
        "num_layers": m.num_layers,
        "enc_dim": enc.in_features,
        "input_size": cell.input_size - m.attn_dim,
        "nonlinearity": m.nonlinearity,
        "re_init": False,
        "normalization": m.normalization,
        "scaling": m.scaling,
        "channels": m.channels,
        "kernel_size": m.kernel_size,
        "bias": m.bias,
        "dropout": m.dropout,
    }
    return (
        New("speechbrain.nnet.RNN.AttentionalRNNDecoder", kwargs),
        identity_keys(m),
    )


# Front end (never pruned; written so that the folder is complete) ----------
@writes(Fbank)
def _fbank(m, ctx, name):
    stft, fb = m.compute_STFT, m.compute_fbanks
    if m.deltas or m.context:
        raise ExportError(f"{name}: Fbank with deltas/context is not written")
    kwargs = {
        "sample_rate": stft.sample_rate,
        "n_fft": stft.n_fft,
        "win_length": stft.win_length * 1000 / stft.sample_rate,
        "hop_length": stft.hop_length * 1000 / stft.sample_rate,
        "n_mels": fb.n_mels,
        "f_min": fb.f_min,
        "f_max": fb.f_max,
        "filter_shape": fb.filter_shape,
        "requires_grad": not fb.freeze,
    }
    return New("speechbrain.lobes.features.Fbank", kwargs), identity_keys(m)


@writes(InputNormalization)
def _input_norm(m, ctx, name):
    kwargs = {"norm_type": m.norm_type}
    for a in ("mean_norm", "std_norm", "avoid_padding_norm", "epsilon"):
        if hasattr(m, a):
            kwargs[a] = getattr(m, a)
    kwargs["update_until_epoch"] = m.update_until_epoch
    return New("speechbrain.processing.features.InputNormalization", kwargs), {}


# Building and checking -------------------------------------------------------
def build_node(node):
    """Builds the object a node describes, through HyperPyYAML.

    Example
    -------
    >>> build_node(New("torch.nn.Dropout", {"p": 0.25})).p
    0.25
    """
    from hyperpyyaml import load_hyperpyyaml

    return load_hyperpyyaml(node.to_yaml("obj"))["obj"]


def map_state_dict(state, keymap, name="model"):
    """``state`` renamed by ``keymap``; every tensor is mapped exactly once.

    Example
    -------
    >>> map_state_dict({"a": 1}, {"a": "b"})
    {'b': 1}
    """
    missing = sorted(set(state) - set(keymap))
    extra = sorted(set(keymap) - set(state))
    if missing or extra:
        raise ExportError(
            f"{name}: key map does not cover the state dict "
            f"(unmapped {missing}, unknown {extra})"
        )
    targets = list(keymap.values())
    if len(set(targets)) != len(targets):
        raise ExportError(f"{name}: two tensors map to one key")
    return {keymap[k]: v for k, v in state.items()}


def record_calls(root, run):
    """Input shapes of all submodules and the first call of each child.

    Arguments
    ---------
    root : torch.nn.Module
        Usually a ``ModuleDict`` of the recipe's modules.
    run : callable
        ``run(root)`` does one forward pass.

    Returns
    -------
    shapes : dict
        ``qualified name -> input shape``.
    calls : dict
        ``top-level child name -> (args, kwargs)`` of its first call.
    """
    shapes, calls, handles = {}, {}, []
    tops = {m: n for n, m in root.named_children()}

    def hook(name):
        def pre(module, args, kwargs):
            if args and torch.is_tensor(args[0]):
                shapes.setdefault(name, tuple(args[0].shape))
            if module in tops and tops[module] not in calls:
                calls[tops[module]] = (args, kwargs)

        return pre

    for name, module in root.named_modules():
        if name:
            handles.append(
                module.register_forward_pre_hook(hook(name), with_kwargs=True)
            )
    try:
        with torch.no_grad():
            run(root)
    finally:
        for h in handles:
            h.remove()
    return shapes, calls


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def check_stock(module, node, keymap, call, name="model", atol=1e-5, load=True):
    """Builds ``node``, loads ``module``'s weights, compares outputs.

    Arguments
    ---------
    module : torch.nn.Module
        The pruned module.
    node : New
        Its stock composition.
    keymap : dict
        Its state-dict key map.
    call : tuple
        ``(args, kwargs)`` of a forward call (None: no output check).
    name : str
        For error messages.
    atol : float
        Largest allowed difference of the outputs.
    load : bool
        False: compare the freshly built module (one the folder builds
        without weights, such as the feature extractor).

    Returns
    -------
    torch.nn.Module
        The stock module, with the weights loaded, in eval mode.

    Example
    -------
    >>> lin = sb.nnet.linear.Linear(n_neurons=3, input_size=4)
    >>> node, keymap = to_stock(lin)
    >>> stock = check_stock(lin, node, keymap, ((torch.rand(2, 4),), {}))
    >>> type(stock).__name__
    'Linear'
    """
    stock = build_node(node)
    if not isinstance(stock, torch.nn.Module):
        return stock
    state = map_state_dict(module.state_dict(), keymap, name)
    try:
        if load:
            stock.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(f"{name}: the stock composition differs: {e}")
    if call is None:
        return stock.eval()
    modes = {m: m.training for m in module.modules()}
    module.eval()
    stock.eval()
    args, kwargs = call
    try:
        with torch.no_grad():
            if hasattr(module, "attn"):
                module.attn.reset()
                stock.attn.reset()
            ref = _first(module(*args, **kwargs))
            out = _first(stock(*args, **kwargs))
    finally:
        for m, mode in modes.items():
            m.training = mode
    if ref.shape != out.shape or not torch.allclose(ref, out, atol=atol):
        diff = (
            (ref - out).abs().max().item() if ref.shape == out.shape else None
        )
        raise ExportError(
            f"{name}: the stock composition computes something else "
            f"(shapes {tuple(ref.shape)} vs {tuple(out.shape)}, max "
            f"difference {diff})"
        )
    return stock
