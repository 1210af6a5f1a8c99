"""Checks of scorer options: a bad value raises, naming the key to set.

Scorers are built from YAML, where ``n_batches: 2.7`` or ``eval_mode: no``
(a string, once quoted) are easy to write; they are refused when the scorer
is built rather than rounded or read as true.

Authors
 * speechbrain-prune team 2026
"""

import math
import numbers


def positive_int(key, value):
    """``value`` as an int, if it is a whole number >= 1.

    Example
    -------
    >>> positive_int("n_batches", 4)
    4
    >>> positive_int("n_batches", 2.7)
    Traceback (most recent call last):
     ...
    ValueError: The scorer's `n_batches` must be a positive integer, got 2.7
    """
    whole = isinstance(value, numbers.Integral) or (
        isinstance(value, float) and value.is_integer()
    )
    if isinstance(value, bool) or not whole or value < 1:
        raise ValueError(
            f"The scorer's `{key}` must be a positive integer, got {value!r}"
        )
    return int(value)


def integer(key, value):
    """``value`` as an int, if it is an integer (a seed).

    Example
    -------
    >>> integer("seed", 3)
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"The scorer's `{key}` must be an integer, got {value!r}"
        )
    return int(value)


def flag(key, value):
    """``value``, if it is a boolean.

    Example
    -------
    >>> flag("eval_mode", "no")
    Traceback (most recent call last):
     ...
    ValueError: The scorer's `eval_mode` must be true or false, got 'no'
    """
    if not isinstance(value, bool):
        raise ValueError(
            f"The scorer's `{key}` must be true or false, got {value!r}"
        )
    return value


def non_negative(key, value):
    """``value`` as a float, if it is a finite number >= 0.

    Example
    -------
    >>> non_negative("zero_threshold", 0.01)
    0.01
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"The scorer's `{key}` must be a finite number >= 0, got {value!r}"
        )
    return float(value)


def one_of(key, value, allowed):
    """``value``, if it is one of ``allowed``.

    Example
    -------
    >>> one_of("aggregate", "mean", ("sum", "mean", "max"))
    'mean'
    """
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(
            f"Unknown {key} {value!r} (set the scorer's `{key}` to one of "
            f"{', '.join(str(a) for a in allowed)})"
        )
    return value
