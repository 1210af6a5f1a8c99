"""Export of pruned models to folders that SpeechBrain alone loads.

- :mod:`~speechbrain_prune.export.architecture`: a pruned model as YAML of
  stock SpeechBrain classes, with its weights renamed to match;
- :mod:`~speechbrain_prune.export.folder`: the hub-ready folder
  (``hyperparams.yaml``, weights, tokenizer, ``config.json``);
- :mod:`~speechbrain_prune.export.card`: its model card (``README.md``);
- :mod:`~speechbrain_prune.export.select`: the best checkpoint of a
  recipe's final pruned structure (``speechbrain-prune export``).

Authors
 * speechbrain-prune team 2026
"""

import os

import torch

from speechbrain_prune.export.architecture import ExportError
from speechbrain_prune.export.folder import export_asr
from speechbrain_prune.plan import PruningPlan

__all__ = ["ExportError", "apply_plan", "export_asr", "load_asr"]


def load_asr(folder, savedir=None):
    """The ``EncoderASR``/``EncoderDecoderASR`` of an exported folder.

    SpeechBrain's own ``from_hparams(source=folder, savedir=...)``, on the
    CPU, the interface read from the folder's ``config.json``.

    Example (after ``export_asr``)::

        from speechbrain_prune.export import load_asr
        print(load_asr("results/demo/models/taylor_50").transcribe_file("a.wav"))
    """
    import json

    from speechbrain.inference import ASR

    folder = os.path.abspath(folder)
    interface = "EncoderASR"
    config = os.path.join(folder, "config.json")
    if os.path.isfile(config):
        with open(config) as f:
            interface = json.load(f)["speechbrain"]["interface"]
    return getattr(ASR, interface).from_hparams(
        source=folder, savedir=savedir or folder, run_opts={"device": "cpu"}
    )


def apply_plan(modules, plan):
    """Prunes ``modules`` (a dict of name -> module) as ``plan`` says.

    Folders exported by earlier versions call this from their YAML
    (``!apply:speechbrain_prune.export.apply_plan``); new folders do not
    need the plugin. Returns the same modules, pruned.

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
