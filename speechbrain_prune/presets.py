"""Pruning presets: YAML files a recipe pulls in with ``!include:``.

One file per criterion x target measure x amount, for example
``taylor_params50.yaml`` (Taylor criterion, 50 % fewer parameters than the
dense model). They live in the package
(``speechbrain_prune/hparams/pruning/``, installed with it; the
repository's top-level ``hparams/pruning`` points there) and are written
by :func:`preset_text`, so they stay consistent: ``python -m
speechbrain_prune.presets --check`` compares the files with it.

HyperPyYAML resolves ``!include:FILE`` relative to the folder of the YAML
file that includes it (an absolute path works too), and the mapping under
the tag overrides the preset's top-level keys. A recipe therefore either
copies the presets next to its YAML (``python -m speechbrain_prune.presets
--copy hparams/pruning``) and writes::

    pruning: !include:pruning/taylor_params50.yaml
        start_epoch: 6
    checkpointer: !new:speechbrain_prune.PruningCheckpointer
        pruner: !ref <pruning[pruner]>
        ...

or names the installed file (``python -m speechbrain_prune.presets``
prints the folder).

Authors
 * speechbrain-prune team 2026
"""

import argparse
import os
import shutil
import sys

#: Criterion name -> scorer class (``speechbrain_prune.scorers``).
CRITERIA = {
    "taylor": "TaylorScorer",
    "fisher": "FisherScorer",
    "activation": "ActivationScorer",
    "magnitude": "MagnitudeScorer",
}
#: Target measure -> what the amount removes.
MEASURES = {
    "macs": "MACs",
    "params": "parameters",
    "latency": "latency (timed on the recipe's forward)",
}
AMOUNTS = (30, 50)
#: Keys the ``!include:`` block may set, with the presets' defaults.
KEYS = {
    "start_epoch": ("!PLACEHOLDER", "the epoch that starts with the stage"),
    "n_stages": (1, ">1: iterative (cubic ramp), `every` epochs apart"),
    "every": (1, "epochs between stages"),
    "scoring_batches": (16, "training batches the criterion reads"),
    "min_keep_fraction": (0.1, "every layer keeps >= 10 % of its channels"),
    "round_to": (1, "kept widths: multiples of this (8 suits GPUs)"),
    "protect": ("[]", 'module patterns never pruned, e.g. ["enc.CNN.*"]'),
}
LATENCY_KEYS = {
    "latency_device": ("cpu", "where the target holds: cpu or cuda"),
    "latency_threads": (2, "CPU threads while timing"),
    "latency_batch_size": (1, "utterances per forward"),
    "latency_seconds": (10.0, "of audio per utterance"),
}


def folder():
    """The folder of the installed presets.

    Example
    -------
    >>> os.path.isfile(os.path.join(folder(), "taylor_params50.yaml"))
    True
    """
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "hparams", "pruning")


def preset_name(criterion, measure, amount):
    """File name of a preset.

    Example
    -------
    >>> preset_name("taylor", "latency", 50)
    'taylor_latency50.yaml'
    """
    return f"{criterion}_{measure}{amount}.yaml"


def preset_names():
    """Every preset's file name, in a fixed order.

    Example
    -------
    >>> len(preset_names()), preset_names()[0]
    (24, 'taylor_macs30.yaml')
    """
    return [
        preset_name(c, m, a)
        for c in CRITERIA
        for m in MEASURES
        for a in AMOUNTS
    ]


def _keys_block(keys):
    width = max(len(f"{k}: {v[0]}") for k, v in keys.items()) + 2
    return "".join(
        f"{k}: {default}".ljust(width) + f"# {why}\n"
        for k, (default, why) in keys.items()
    )


def preset_text(criterion, measure, amount):
    """The YAML text of one preset.

    Arguments
    ---------
    criterion : str
        A key of ``CRITERIA``.
    measure : str
        A key of ``MEASURES``.
    amount : int
        Percent removed from the dense model, cumulative over the stages.

    Example
    -------
    >>> text = preset_text("taylor", "params", 50)
    >>> "target: 0.5" in text and "target_type: params" in text
    True
    """
    if criterion not in CRITERIA or measure not in MEASURES:
        raise ValueError(
            f"No preset for {criterion!r} x {measure!r}: criteria "
            f"{list(CRITERIA)}, measures {list(MEASURES)}"
        )
    name = preset_name(criterion, measure, amount)
    keys = dict(KEYS)
    if measure == "latency":
        # ``table``: only widths the latency table measured.
        keys["round_to"] = (
            1,
            "kept widths: multiples of this, or table (measured)",
        )
        keys.update(LATENCY_KEYS)
    lines = [
        "# " + "#" * 76,
        f"# Pruning preset: {criterion} criterion, {amount} % off the dense",
        f"# model's {MEASURES[measure]}, cumulative over the stages.",
        "# Written by speechbrain_prune/presets.py; check with",
        "#     python -m speechbrain_prune.presets --check",
        "#",
        "# In a recipe's YAML (the whole edit, train.py unchanged):",
        f"#     pruning: !include:pruning/{name}",
        "#         start_epoch: 6      # required; other keys below optional",
        "#     checkpointer: !new:speechbrain_prune.PruningCheckpointer",
        "#         pruner: !ref <pruning[pruner]>",
        "#         checkpoints_dir: ...   # as before",
        "# ``pruning/`` is relative to that YAML's folder (copy the presets",
        "# there: python -m speechbrain_prune.presets --copy DIR) or give",
        "# an absolute path.",
        "# " + "#" * 76,
        "",
    ]
    text = "\n".join(lines) + "\n" + _keys_block(keys) + "\n"
    text += (
        "pruner: !new:speechbrain_prune.Pruner\n"
        f"    scorer: !new:speechbrain_prune.scorers.{CRITERIA[criterion]}\n"
        "        n_batches: !ref <scoring_batches>\n"
        f"    target: {amount / 100:g}\n"
        "    start_epoch: !ref <start_epoch>\n"
        "    n_stages: !ref <n_stages>\n"
        "    every: !ref <every>\n"
        "    selection:\n"
        f"        target_type: {measure}\n"
        "        min_keep_fraction: !ref <min_keep_fraction>\n"
        "        round_to: !ref <round_to>\n"
        "        protect: !ref <protect>\n"
    )
    if measure == "latency":
        text += (
            "    latency: !new:speechbrain_prune.LatencySetup\n"
            "        device: !ref <latency_device>\n"
            "        threads: !ref <latency_threads>\n"
            "        batch_size: !ref <latency_batch_size>\n"
            "        seconds: !ref <latency_seconds>\n"
        )
    return text


def presets():
    """``{file name: text}`` of every preset.

    Example
    -------
    >>> sorted(presets())[:2]
    ['activation_latency30.yaml', 'activation_latency50.yaml']
    """
    return {
        preset_name(c, m, a): preset_text(c, m, a)
        for c in CRITERIA
        for m in MEASURES
        for a in AMOUNTS
    }


def write(dest):
    """Writes every preset into ``dest`` (created); returns the paths.

    Example
    -------
    >>> import tempfile
    >>> len(write(tempfile.mkdtemp()))
    24
    """
    os.makedirs(dest, exist_ok=True)
    paths = []
    for name, text in presets().items():
        path = os.path.join(dest, name)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths


def stale(dest=None):
    """Presets in ``dest`` (default: the installed ones) that differ from
    :func:`preset_text`, or are missing or extra.

    Example
    -------
    >>> stale()
    []
    """
    dest = dest or folder()
    expected = presets()
    found = {n for n in os.listdir(dest) if n.endswith(".yaml")}
    bad = sorted(found - set(expected))
    for name, text in expected.items():
        path = os.path.join(dest, name)
        if not os.path.isfile(path):
            bad.append(name)
            continue
        with open(path) as f:
            if f.read() != text:
                bad.append(name)
    return sorted(bad)


def main(argv=None):
    """``python -m speechbrain_prune.presets [--copy DIR|--write|--check]``"""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_prune.presets",
        description="Pruning presets for a recipe's `!include:`. Without "
        "options: print their folder and names.",
    )
    parser.add_argument(
        "--copy", metavar="DIR", help="copy the presets into DIR"
    )
    parser.add_argument(
        "--write", action="store_true", help="rewrite the installed presets"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if an installed preset differs from the generator",
    )
    args = parser.parse_args(argv)
    if args.write:
        write(folder())
    if args.check:
        bad = stale()
        if bad:
            print("Stale presets (run --write):", ", ".join(bad))
            return 1
    if args.copy:
        os.makedirs(args.copy, exist_ok=True)
        for name in preset_names():
            shutil.copy(os.path.join(folder(), name), args.copy)
        print(f"Copied {len(preset_names())} presets to {args.copy}")
        return 0
    print(folder())
    for name in preset_names():
        print("   ", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
