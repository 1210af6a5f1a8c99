"""DDP: the same scores on every rank, and progress shown on one.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.scorers.checks import ScoreError


def is_main_rank():
    """True on rank 0, or when ``torch.distributed`` is not in use.

    Example
    -------
    >>> is_main_rank()
    True
    """
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
