"""Selection options and their checks: allowed values, removal steps.

Every check raises :class:`SelectionError` with a message that names the
option (the YAML key) to change.

Authors
 * speechbrain-prune team 2026
"""

import math

TARGET_TYPES = ("macs", "params", "latency", "layer_ratio")
NORMALIZATIONS = ("none", "mean", "max", "l2")
MODES = ("global", "uniform")
COSTS = ("macs", "params", "latency")


class SelectionError(ValueError):
    """The selection options cannot be honoured; the message names the key."""


def removal_steps(size, min_keep=1, min_keep_fraction=0.0, round_to=1):
    """Allowed numbers of removed channels of a group, increasing.

    Kept widths are multiples of ``round_to`` and at least
    ``max(min_keep, ceil(min_keep_fraction * size))`` (rounded up to a
    multiple of ``round_to``).

    Example
    -------
    >>> removal_steps(10, round_to=4)
    [2, 6]
    >>> removal_steps(10, min_keep_fraction=0.5)
    [1, 2, 3, 4, 5]
    """
    floor = max(int(min_keep), math.ceil(min_keep_fraction * size - 1e-9), 1)
    floor = math.ceil(floor / round_to) * round_to
    return [
        size - w for w in range(size - 1, floor - 1, -1) if w % round_to == 0
    ]


def require_one_of(key, value, allowed):
    """Raises unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise SelectionError(
            f"Unknown {key} {value!r} (set `{key}` to one of "
            f"{', '.join(allowed)})"
        )


def require_fraction(key, value, low_inclusive=False):
    """Raises unless ``value`` is a fraction in (0, 1) (or [0, 1))."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (0 <= value if low_inclusive else 0 < value) and value < 1
    if not ok:
        low = "[0" if low_inclusive else "(0"
        raise SelectionError(
            f"`{key}` must be a fraction in {low}, 1), got {value!r}"
        )


def require_whole(key, value, low):
    """Raises unless ``value`` is an integer (at least ``low``, if given)."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (low is not None and value < low):
        at_least = "" if low is None else f" >= {low}"
        raise SelectionError(
            f"`{key}` must be an integer{at_least}, got {value!r}"
        )
