"""Manifests: the JSON file that says what a generated folder holds.

A corpus maker writes one next to what it made, with the options that
made it; the next call with the same options finds it up to date
(:func:`up_to_date`) and makes nothing again.

Authors
 * speechbrain-prune team 2026
"""

import json


def read_json(path):
    """The JSON value stored in ``path``; None if it is missing or broken.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "corpus.json")
    >>> read_json(path) is None
    True
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"version": 2')  # cut short
    >>> read_json(path) is None
    True
    """
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def up_to_date(manifest, key):
    """Whether ``manifest`` (a dict or None) holds every entry of ``key``.

    Example
    -------
    >>> key = {"version": 2, "params": {"n_train": 24}}
    >>> up_to_date(dict(key, speakers=6), key)
    True
    >>> up_to_date({"version": 1, "params": {"n_train": 24}}, key)
    False
    >>> up_to_date(None, key)
    False
    """
    return manifest is not None and all(
        manifest.get(name) == value for name, value in key.items()
    )
