"""What every importance scorer shares: the interface, batches, checks.

A scorer gives every channel of every prunable group a non-negative
importance (higher = keep). It sees the model only through the recipe's
own loss, ``loss_fn(batch) -> scalar``, so a CTC recipe, a seq2seq recipe
with attention and CTC+NLL, or anything else scores unchanged; use
:func:`brain_loss_fn` to build it from a SpeechBrain ``Brain``.

Scoring leaves the model as it found it: train/eval modes, parameter
values, buffers (BatchNorm running statistics, LiGRU drop masks) and
``.grad`` are restored afterwards.

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import itertools

import speechbrain as sb
import torch
from tqdm.auto import tqdm

from speechbrain_prune.handlers import handler_for
from speechbrain_prune.scorers.options import flag, one_of, positive_int

AGGREGATES = ("sum", "mean", "max")


class ScoreError(RuntimeError):
    """A score is NaN or infinite; the stage stops instead of guessing."""


class Scorer:
    """Base class: turns batches and a loss into per-channel importance.

    Subclasses implement :meth:`compute`; :meth:`score` wraps it with the
    bookkeeping every scorer needs (modes and buffers restored, finite
    check, averaging across DDP ranks).

    Arguments
    ---------
    n_batches : int
        Batches consumed at most (fewer if the iterable ends first).
    aggregate : str
        How the scores of a channel's coupled parameters combine into one
        group score: ``sum``, ``mean`` or ``max``.
    eval_mode : bool
        Score with every module in eval mode (no dropout, BatchNorm uses
        its running statistics), which makes scores reproducible. Modes
        are restored afterwards either way.
    progress : bool
        Show a progress bar over the scoring batches.

    Example
    -------
    >>> class Ones(Scorer):
    ...     def compute(self, root, groups, batches, loss_fn):
    ...         return {g.id: torch.ones(g.size) for g in groups}
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=3, input_size=2),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=3))
    >>> groups = discover_groups(model, torch.rand(1, 4, 2))
    >>> Ones().score(model, groups, [], None)
    {'0': tensor([1., 1., 1.], dtype=torch.float64)}
    """

    #: True for scorers that read no data (magnitude, random).
    data_free = False

    def __init__(
        self, n_batches=10, aggregate="sum", eval_mode=True, progress=True
    ):
        self.n_batches = positive_int("n_batches", n_batches)
        self.aggregate = one_of("aggregate", aggregate, AGGREGATES)
        self.eval_mode = flag("eval_mode", eval_mode)
        self.progress = flag("progress", progress)

    def compute(self, root, groups, batches, loss_fn):
        """``group id -> scores``; ``groups`` are the prunable ones."""
        raise NotImplementedError

    def score(self, root, groups, batches, loss_fn):
        """Importance of every channel of every prunable group.

        Arguments
        ---------
        root : torch.nn.Module
            The traced root (model, or ``ModuleDict`` of a recipe's modules)
            whose modules ``loss_fn`` runs.
        groups : GroupSet
            Groups of ``root``; only ``groups.prunable()`` are scored.
        batches : iterable
            Training batches, as ``loss_fn`` takes them.
        loss_fn : callable
            ``loss_fn(batch) -> scalar loss`` through the current modules.

        Returns
        -------
        dict
            ``group id -> float64 tensor (group size)``, higher = keep. With
            ``torch.distributed`` initialised, averaged over ranks.
        """
        prunable = (
            groups.prunable()
            if hasattr(groups, "prunable")
            else [g for g in groups if g.prunable]
        )
        with scoring_state(root, self.eval_mode):
            scores = self.compute(root, prunable, batches, loss_fn)
        scores = {g.id: scores[g.id].double() for g in prunable}
        check_finite(scores, "before averaging over ranks")
        scores = all_reduce_scores(scores)
        check_finite(scores, "after averaging over ranks")
        return scores

    # Helpers for subclasses ------------------------------------------------
    def batches(self, batches, desc=None):
        """``(index, batch)`` for at most ``n_batches``, with progress bar."""
        if batches is None:
            raise ValueError(f"{type(self).__name__} needs batches to score on")
        total = self.n_batches
        if hasattr(batches, "__len__"):
            total = min(total, len(batches))
        it = itertools.islice(iter(batches), self.n_batches)
        seen = False
        for n, batch in enumerate(
            tqdm(
                it,
                total=total,
                desc=desc or f"{type(self).__name__} scoring",
                disable=not self.progress or not _is_main_rank(),
                leave=False,
            )
        ):
            seen = True
            yield n, batch
        if not seen:
            raise ValueError(
                f"{type(self).__name__} got no batches to score on"
            )

    def combine(self, per_slice):
        """Aggregates a list of ``(size,)`` tensors with ``aggregate``."""
        return aggregate_slices(per_slice, self.aggregate)

    def __repr__(self):
        args = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if k != "progress"
        )
        return f"{type(self).__name__}({args})"


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


def check_finite(scores, where):
    """Raises :class:`ScoreError` naming the first group with NaN/inf.

    Arguments
    ---------
    scores : dict
        ``group id -> tensor``.
    where : str
        Where the scores come from (``"batch 3"``), for the message.

    Example
    -------
    >>> check_finite({"a": torch.tensor([1.0, float("nan")])}, "batch 3")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_prune.scorers.base.ScoreError: Group a: score of channel 1 \
is nan at batch 3; ...
    """
    for gid, s in scores.items():
        bad = ~torch.isfinite(s)
        if bad.any():
            i = int(torch.nonzero(bad)[0])
            raise ScoreError(
                f"Group {gid}: score of channel {i} is {s[i].item()} at "
                f"{where}; the stage stops (check the learning rate, the "
                "data of that batch, or score with more stable options)"
            )


def check_grads(grads, slices_by_group, index):
    """Raises :class:`ScoreError` naming the group of a non-finite gradient.

    Example
    -------
    >>> w = torch.nn.Parameter(torch.ones(2, 2))
    >>> grads = {id(w): torch.tensor([[1.0, float("inf")], [0.0, 0.0]])}
    >>> check_grads(grads, {"g": [(w, 0, torch.tensor([[0], [1]]))]}, 5)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_prune.scorers.base.ScoreError: Group g: the gradient ...
    """
    for gid, slices in slices_by_group.items():
        for p, _, _ in slices:
            g = grads.get(id(p))
            if g is not None and not torch.isfinite(g).all():
                raise ScoreError(
                    f"Group {gid}: the gradient of a coupled parameter "
                    f"{tuple(p.shape)} is not finite at batch {index}; the "
                    "stage stops (check that batch and the learning rate)"
                )


def check_loss(loss, index):
    """Raises :class:`ScoreError` when the loss of batch ``index`` is bad.

    Example
    -------
    >>> check_loss(torch.tensor(1.5), 0)
    >>> check_loss(torch.tensor(float("inf")), 7)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_prune.scorers.base.ScoreError: The loss is inf at batch 7 ...
    """
    if not torch.is_tensor(loss) or loss.dim() != 0:
        raise TypeError(
            "loss_fn must return a scalar tensor, got "
            f"{type(loss).__name__} {getattr(loss, 'shape', '')}"
        )
    if not torch.isfinite(loss):
        raise ScoreError(
            f"The loss is {loss.item()} at batch {index} (all groups); the "
            "stage stops (check that batch and the model)"
        )


def _is_main_rank():
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or (
        dist.get_rank() == 0
    )


def all_reduce_scores(scores):
    """Averages scores over DDP ranks, so that every rank removes the same.

    A no-op unless ``torch.distributed`` is initialised with several
    ranks. The average is broadcast from rank 0 afterwards, so all ranks
    hold bit-identical scores whatever the reduction order.

    Arguments
    ---------
    scores : dict
        ``group id -> tensor``; every rank must hold the same ids.

    Returns
    -------
    dict

    Example
    -------
    >>> all_reduce_scores({"a": torch.tensor([1.0, 2.0])})
    {'a': tensor([1., 2.])}
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return scores
    world = dist.get_world_size()
    if world < 2:
        return scores
    keys = sorted(scores)
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    sizes = [scores[k].numel() for k in keys]
    flat = torch.cat([scores[k].double().flatten() for k in keys]).to(device)
    shape = torch.tensor([len(keys), flat.numel()], device=device)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shapes[0]) for s in shapes):
        raise ScoreError(
            "Ranks hold scores of different groups; discover the groups on "
            "the same model on every rank"
        )
    dist.all_reduce(flat)
    flat /= world
    dist.broadcast(flat, src=0)
    out = {}
    for k, part in zip(keys, flat.cpu().split(sizes)):
        out[k] = part.to(scores[k].dtype)
    return {k: out[k] for k in scores}


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
    rnns = [
        (m, m.dropout)
        for m in root.modules()
        if isinstance(m, torch.nn.RNNBase)
    ]
    if eval_mode:
        root.eval()
        # cuDNN runs an RNN's backward in training mode only. A torch RNN
        # differs between modes by its inter-layer dropout alone, so
        # training mode without dropout computes exactly what eval does.
        for m, _ in rnns:
            m.dropout = 0.0
            m.train()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for m, p in rnns:
            m.dropout = p
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


def brain_loss_fn(brain, stage=sb.Stage.TRAIN):
    """``loss_fn(batch)`` through a Brain's own forward and objectives.

    Arguments
    ---------
    brain : speechbrain.Brain
        The recipe's Brain; its ``compute_forward`` and
        ``compute_objectives`` define the loss (CTC, attention + CTC, ...).
    stage : speechbrain.Stage
        Stage passed to both (``TRAIN`` by default).

    Returns
    -------
    callable

    Example
    -------
    >>> class MyBrain(sb.Brain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.lin(batch)
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return predictions.pow(2).mean()
    >>> brain = MyBrain(modules={"lin": torch.nn.Linear(3, 1)},
    ...                 run_opts={"device": "cpu"})
    >>> loss_fn = brain_loss_fn(brain)
    >>> loss_fn(torch.rand(4, 3)).dim()
    0
    """

    def loss_fn(batch):
        predictions = brain.compute_forward(batch, stage)
        return brain.compute_objectives(predictions, batch, stage)

    return loss_fn
