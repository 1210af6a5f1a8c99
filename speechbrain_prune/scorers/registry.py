"""Scorers by name: a new criterion is one small file that registers itself.

Authors
 * speechbrain-prune team 2026
"""

_SCORERS = {}


def register_scorer(name):
    """Class decorator: makes the scorer known as ``name``.

    Arguments
    ---------
    name : str
        Short name for :func:`get_scorer` (and for YAML strings).

    Returns
    -------
    decorator

    Example
    -------
    >>> from speechbrain_prune.scorers.base import Scorer
    >>> @register_scorer("constant_example")
    ... class ConstantScorer(Scorer):
    ...     data_free = True
    ...     def compute(self, root, groups, batches, loss_fn):
    ...         return {g.id: torch.ones(g.size) for g in groups}
    >>> type(get_scorer("constant_example")).__name__
    'ConstantScorer'
    """

    def decorator(cls):
        key = name.lower()
        if key in _SCORERS and _SCORERS[key] is not cls:
            raise ValueError(f"A scorer is already registered as {name!r}")
        _SCORERS[key] = cls
        cls.name = key
        return cls

    return decorator


def known_scorers():
    """Registered scorer names, sorted.

    Example
    -------
    >>> "taylor" in known_scorers()
    True
    """
    return sorted(_SCORERS)


def get_scorer(name_or_instance, **kwargs):
    """A scorer from its name (or the scorer itself, returned as is).

    Arguments
    ---------
    name_or_instance : str or Scorer
        ``taylor``, ``activation``, ``fisher``, ``ablation``,
        ``magnitude``, ``random``, ... or an already built scorer (what a
        YAML ``!new:`` gives).
    **kwargs
        Constructor arguments when a name is given.

    Returns
    -------
    Scorer

    Example
    -------
    >>> get_scorer("magnitude", norm=2)
    MagnitudeScorer(n_batches=1, aggregate='sum', eval_mode=True, norm=2)
    >>> get_scorer("tayler")
    Traceback (most recent call last):
     ...
    ValueError: Unknown scorer 'tayler' (key `scorer`); known scorers: \
ablation, activation, fisher, magnitude, random, taylor
    """
    from speechbrain_prune.scorers.base import Scorer

    if isinstance(name_or_instance, Scorer):
        if kwargs:
            raise ValueError(
                "Arguments were given with an already built scorer; pass "
                "its name instead, or set them where it is built"
            )
        return name_or_instance
    if isinstance(name_or_instance, type) and issubclass(
        name_or_instance, Scorer
    ):
        return name_or_instance(**kwargs)
    key = str(name_or_instance).lower()
    if key not in _SCORERS:
        known = ", ".join(n for n in known_scorers() if "example" not in n)
        raise ValueError(
            f"Unknown scorer {name_or_instance!r} (key `scorer`); known "
            f"scorers: {known}"
        )
    return _SCORERS[key](**kwargs)
