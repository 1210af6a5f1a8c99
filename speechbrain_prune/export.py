"""Export of pruned models that SpeechBrain's inference classes load.

A pruned model cannot be built from the recipe's hyperparameters alone:
its layers are narrower. :func:`export_asr` writes a folder that
``speechbrain.inference.ASR.EncoderASR.from_hparams`` loads as it is
(from a local folder or, once uploaded, a model hub): the inference
``hyperparams.yaml`` builds the original architecture, then applies the
pruning plan, which is stored inline in the same file, through
:func:`apply_plan`; the pretrainer then loads the pruned weights.

Authors
 * speechbrain-prune team 2026
"""

import os
import re
import shutil

import torch
import yaml

from speechbrain_prune.plan import PruningPlan

#: Files of the exported folder (what the pretrainer loads).
WEIGHTS = ("model", "output", "normalizer")


def apply_plan(modules, plan):
    """Prunes ``modules`` (a dict of name -> module) as ``plan`` says.

    Used from an inference YAML: ``!apply:speechbrain_prune.export.apply_plan``
    with the plan inline. Returns the same modules, pruned.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> lin = sb.nnet.linear.Linear(n_neurons=6, input_size=3)
    >>> head = sb.nnet.linear.Linear(n_neurons=2, input_size=6)
    >>> root = torch.nn.ModuleDict({"lin": lin, "head": head})
    >>> run = lambda m: m.head(m.lin(torch.rand(1, 3)))
    >>> groups = discover_groups(root, run)
    >>> plan = PruningPlan()
    >>> _ = plan.prune(root, groups, {"lin": [0, 1]})
    >>> fresh = {"lin": sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...          "head": sb.nnet.linear.Linear(n_neurons=2, input_size=6)}
    >>> _ = apply_plan(fresh, plan.to_dict())
    >>> fresh["head"].w.weight.shape
    torch.Size([2, 4])
    """
    root = torch.nn.ModuleDict(dict(modules))
    PruningPlan.from_dict(plan).apply(root)
    return modules


def fill_template(template, values):
    """Sets top-level ``key: value`` lines of a YAML text to ``values``.

    Only keys present in the template change; values are written in YAML
    flow style, class objects as ``!name:module.Class``.

    Example
    -------
    >>> text = "a: 1\\nb: !name:x.Y\\n"
    >>> print(fill_template(text, {"a": 5, "b": torch.nn.GRU}))
    a: 5
    b: !name:torch.nn.modules.rnn.GRU
    <BLANKLINE>
    """
    out = []
    for line in template.splitlines(keepends=True):
        m = re.match(r"^([A-Za-z_][\w]*):[ \t]+(\S.*)$", line)
        if m and m.group(1) in values and _settable(m.group(2)):
            out.append(f"{m.group(1)}: {_yaml_value(values[m.group(1)])}\n")
        else:
            out.append(line)
    return "".join(out)


def _settable(text):
    """Plain values and ``!name:`` classes; not objects or references."""
    return not text.startswith(("!new:", "!ref", "!apply:", "!include"))


def _yaml_value(value):
    if isinstance(value, type) or callable(value) and hasattr(value, "func"):
        target = getattr(value, "func", value)
        return f"!name:{target.__module__}.{target.__qualname__}"
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return (
        yaml.safe_dump(value, default_flow_style=True)
        .strip()
        .replace("\n...", "")
    )


def export_asr(folder, template, hparams, modules, plan, label_encoder_file):
    """Writes a folder that ``EncoderASR.from_hparams`` loads.

    Arguments
    ---------
    folder : str
        Destination (created).
    template : str
        Inference YAML template (e.g. the recipe's ``hparams/inference.yaml``).
    hparams : dict
        Training hyperparameters (architecture keys are copied).
    modules : dict
        ``model``, ``output`` and ``normalize`` modules (pruned).
    plan : PruningPlan
        The plan that pruned them (replayed at load time).
    label_encoder_file : str
        The recipe's ``label_encoder.txt``.

    Returns
    -------
    str
        The folder.
    """
    os.makedirs(folder, exist_ok=True)
    with open(template) as f:
        text = fill_template(f.read(), hparams)
    text += "pruning_plan: " + yaml.safe_dump(
        plan.to_dict(), default_flow_style=True, width=10**9
    )
    text += (
        "pruned: !apply:speechbrain_prune.export.apply_plan\n"
        "    modules:\n"
        "        model: !ref <model>\n"
        "        output: !ref <output>\n"
        "    plan: !ref <pruning_plan>\n"
    )
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as f:
        f.write(text)
    plan.save(os.path.join(folder, "plan.yaml"))
    torch.save(
        modules["model"].state_dict(), os.path.join(folder, "model.ckpt")
    )
    torch.save(
        modules["output"].state_dict(), os.path.join(folder, "output.ckpt")
    )
    modules["normalize"]._save(os.path.join(folder, "normalizer.ckpt"))
    shutil.copyfile(label_encoder_file, os.path.join(folder, "tokenizer.ckpt"))
    return folder


def load_asr(folder, savedir=None):
    """``EncoderASR`` of an exported folder (offline, from local files).

    Example (after ``export_asr``)::

        from speechbrain_prune.export import load_asr
        print(load_asr("results/demo/taylor_50").transcribe_file("a.wav"))
    """
    from speechbrain.inference.ASR import EncoderASR

    folder = os.path.abspath(folder)
    return EncoderASR.from_hparams(
        source=folder, savedir=savedir or folder, run_opts={"device": "cpu"}
    )
