"""Weight sensitivity: how much the loss grows when a channel goes.

Two scorers measure the same quantity:

- :class:`AblationScorer` removes each channel in turn (exactly as the
  pruned model would compute, see :mod:`speechbrain_prune.reference`) and
  measures the loss on ``M`` batches: exact, one forward pass per channel
  and batch, for small models and as ground truth in tests;
- :class:`FisherScorer` estimates it to second order from gradients only
  (Optimal Brain Damage with the empirical Fisher as the Hessian).

Authors
 * speechbrain-prune team 2026
"""

import torch
from tqdm.auto import tqdm

from speechbrain_prune.handlers import handler_for
from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.checks import (
    ScoreError,
    check_grads,
    check_loss,
)
from speechbrain_prune.scorers.distributed import is_main_rank
from speechbrain_prune.scorers.gradients import loss_and_grads
from speechbrain_prune.scorers.options import flag, integer, one_of
from speechbrain_prune.scorers.registry import register_scorer
from speechbrain_prune.scorers.slices import (
    channel_sum,
    group_slices,
    slice_params,
)
from speechbrain_prune.scorers.state import restored, seeded

FISHER_MODES = ("obd", "group")


@register_scorer("fisher")
class FisherScorer(Scorer):
    """Fast second-order estimate of the loss increase of removing a channel.

    Removing channel ``c`` moves its coupled weights ``w`` to zero, so
    ``dL ~ -g.w + 1/2 w'Hw``. With the empirical Fisher ``F`` (gradients of
    the scoring batches) as ``H``:

    - ``mode="obd"``: diagonal Fisher, ``1/2 sum(F_ii w_i ** 2)`` over the
      channel's coupled weights (Optimal Brain Damage, LeCun et al. 1990);
    - ``mode="group"``: the Fisher of the channel's mask, ``1/2 mean_b
      (sum w.g_b) ** 2``, which keeps the correlations between the
      channel's weights (Group Fisher, Liu et al. 2021).

    ``first_order`` adds ``-mean(g).w``, useful before convergence. The
    score is the absolute value of the estimate. The Fisher here is
    computed from batch gradients (per-example gradients would cost one
    backward per example); use small batches for a closer estimate.

    Arguments
    ---------
    n_batches : int
        Batches used (one forward and backward each).
    mode : str
        ``obd`` or ``group``.
    first_order : bool
        Add the first-order term.
    aggregate : str
        ``sum``, ``mean`` or ``max`` over coupled parameters.
    eval_mode : bool
        Score in eval mode; modes are restored afterwards.
    progress : bool
        Show a progress bar.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> _ = torch.manual_seed(0)
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=4, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=4))
    >>> groups = discover_groups(model, torch.rand(1, 5, 3))
    >>> with torch.no_grad():
    ...     model["1"].w.weight[:, 1] = 0.0
    ...     model["0"].w.weight[1] = 0.0
    >>> batches = [torch.rand(2, 5, 3) for _ in range(3)]
    >>> scores = FisherScorer(n_batches=3, progress=False).score(
    ...     model, groups, batches, lambda x: model(x).pow(2).mean())
    >>> int(scores["0"].argmin())
    1
    """

    def __init__(
        self,
        n_batches=10,
        mode="obd",
        first_order=False,
        aggregate="sum",
        eval_mode=True,
        progress=True,
    ):
        super().__init__(n_batches, aggregate, eval_mode, progress)
        self.mode = one_of("mode", mode, FISHER_MODES)
        self.first_order = flag("first_order", first_order)

    def compute(self, root, groups, batches, loss_fn):
        """Accumulates gradient statistics, then forms the estimate."""
        slices = {g.id: group_slices(root, g) for g in groups}
        slices = {
            gid: [s for s in sl if s[0].requires_grad]
            for gid, sl in slices.items()
        }
        params = slice_params(slices)
        # Parameter-sized sums in float32 (on the parameters' device): a
        # large encoder would not afford two float64 copies.
        mean_g = {
            id(p): torch.zeros_like(p, dtype=torch.float32) for p in params
        }
        sq_g = (
            {id(p): torch.zeros_like(p, dtype=torch.float32) for p in params}
            if self.mode == "obd"
            else {}
        )
        sq_v = {g.id: torch.zeros(g.size, dtype=torch.float64) for g in groups}
        n = 0
        for b, batch in self.batches(batches):
            _, grads = loss_and_grads(loss_fn, batch, params, b)
            check_grads(grads, slices, b)
            for p in params:
                g = grads[id(p)].float()
                mean_g[id(p)] += g
                if self.mode == "obd":
                    sq_g[id(p)] += g * g
            if self.mode == "group":
                for gid, sl in slices.items():
                    v = self._per_channel(sl, lambda p, g=grads: g[id(p)])
                    sq_v[gid] += v * v
            n += 1
        out = {}
        for group in groups:
            sl = slices[group.id]
            if self.mode == "obd":
                est = self._per_channel(
                    sl,
                    lambda p: sq_g[id(p)] / n * p.detach(),
                    halve=True,
                )
            else:
                est = 0.5 * sq_v[group.id] / n
            if self.first_order:
                est = est - self._per_channel(sl, lambda p: mean_g[id(p)] / n)
            out[group.id] = est.abs()
        return out

    def _per_channel(self, slices, factor, halve=False):
        """``sum(factor(p) * w)`` per channel, combined over parameters."""
        size = slices[0][2].shape[0] if slices else 0
        per_slice = []
        for p, dim, index in slices:
            w = p.detach().double()
            v = channel_sum(factor(p).double() * w, dim, index)
            per_slice.append(0.5 * v.cpu() if halve else v.cpu())
        if not per_slice:
            return torch.zeros(size, dtype=torch.float64)
        if self.aggregate == "max":
            per_slice = [v.abs() for v in per_slice]
        return self.combine(per_slice)


@register_scorer("ablation")
class AblationScorer(Scorer):
    """Exact loss increase when each channel alone is removed.

    For every channel of every prunable group, the channel is taken out of
    the computation in place, the way the masked reference does it (its
    consumers ignore it, joint normalisations use the kept channels only),
    the loss is measured on the same batches, and the model is restored.
    The score is ``|mean(L_removed - L)|``, or the signed difference with
    ``signed=True`` (a negative value: removing the channel helps). Every
    forward pass of one batch uses the same random seed, so dropout (with
    ``eval_mode=False``) draws the same masks with and without the channel.

    Cost: ``n_batches * (1 + total channels)`` forward passes.

    Arguments
    ---------
    n_batches : int
        Batches ``M`` the loss is measured on (kept in memory).
    signed : bool
        Return the signed loss change instead of its magnitude.
    eval_mode : bool
        Measure in eval mode; modes are restored afterwards.
    seed : int
        Seed of each forward pass's random draws.
    progress : bool
        Show a progress bar over channels.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> _ = torch.manual_seed(0)
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=4, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=4))
    >>> groups = discover_groups(model, torch.rand(1, 5, 3))
    >>> with torch.no_grad():
    ...     model["1"].w.weight[:, 3] = 0.0
    >>> batches = [torch.rand(2, 5, 3)]
    >>> scores = AblationScorer(n_batches=1, progress=False).score(
    ...     model, groups, batches, lambda x: model(x).pow(2).mean())
    >>> scores["0"][3].item()
    0.0
    """

    def __init__(
        self, n_batches=4, signed=False, eval_mode=True, seed=0, progress=True
    ):
        super().__init__(n_batches, "sum", eval_mode, progress)
        self.signed = flag("signed", signed)
        self.seed = integer("seed", seed)

    def compute(self, root, groups, batches, loss_fn):
        """One masked measurement per channel."""
        kept = [batch for _, batch in self.batches(batches, "ablation data")]
        base = self._losses(loss_fn, kept, None)
        bar = tqdm(
            total=sum(g.size for g in groups),
            desc="AblationScorer",
            disable=not self.progress or not is_main_rank(),
            leave=False,
        )
        out = {}
        for group in groups:
            modules = [root.get_submodule(m) for m in group.modules()]
            deltas = torch.zeros(group.size, dtype=torch.float64)
            for c in range(group.size):
                removed = torch.tensor([c])
                with restored(modules):
                    for member in group.members:
                        module = root.get_submodule(member.module)
                        handler_for(module).mask(module, member, removed)
                    losses = self._losses(loss_fn, kept, (group.id, c))
                deltas[c] = (losses - base).mean()
                bar.update(1)
            out[group.id] = deltas if self.signed else deltas.abs()
        bar.close()
        return out

    def _losses(self, loss_fn, batches, where):
        losses = torch.zeros(len(batches), dtype=torch.float64)
        for b, batch in enumerate(batches):
            with torch.no_grad(), seeded(self.seed + b):
                loss = loss_fn(batch)
            if where is None:
                check_loss(loss, b)
            elif not torch.isfinite(loss):
                raise ScoreError(
                    f"Group {where[0]}: the loss is {loss.item()} at batch "
                    f"{b} with channel {where[1]} removed; the stage stops"
                )
            losses[b] = loss.item()
        return losses
