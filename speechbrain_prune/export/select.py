"""A recipe's run to a folder: its best checkpoint of the final structure.

``speechbrain-prune export`` and the demo run :func:`export_recipe`: the
recipe's YAML is
loaded (its save folder given), its checkpointer picks the best checkpoint
by the recipe's metric among those of the final pruned structure
(``PruningCheckpointer.find_checkpoint``), the checkpoint's plan prunes the
freshly built modules and the checkpoint's files load into them.

Authors
 * speechbrain-prune team 2026
"""

import io
import os
import re

import torch

from speechbrain_prune.export.architecture import ExportError
from speechbrain_prune.plan import PruningPlan

#: Value given to ``!PLACEHOLDER`` keys the export does not need (data).
UNUSED = "unused-by-export"


def fill_placeholders(text, overrides):
    """Overrides for the ``!PLACEHOLDER`` keys ``overrides`` leaves open.

    Example
    -------
    >>> fill_placeholders("data_folder: !PLACEHOLDER\\nn: 1\\n", {})
    {'data_folder': 'unused-by-export'}
    """
    keys = re.findall(r"^(\w+):\s*!PLACEHOLDER", text, flags=re.M)
    return {k: UNUSED for k in keys if k not in overrides}


def load_best(hparams_file, save_folder=None, overrides=None, **key):
    """Recipe hparams whose modules hold the best final checkpoint.

    Arguments
    ---------
    hparams_file : str
        The recipe's training YAML.
    save_folder : str, optional
        Its checkpoint folder (``save_folder``; default: the YAML's).
    overrides : dict or str, optional
        YAML overrides, as on the recipe's command line.
    **key
        ``min_key="WER"`` or ``max_key=...``, as the recipe's
        ``evaluate`` uses.

    Returns
    -------
    hparams : dict
        The loaded YAML; ``hparams["modules"]`` pruned, weights loaded,
        in eval mode.
    plan : PruningPlan
        The checkpoint's plan (empty for a run that never pruned).
    history : list
        The pruner's stage records (timings), if any.
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
    """
    from hyperpyyaml import load_hyperpyyaml

    # Overrides stay YAML text where given so (HyperPyYAML reads tuples
    # such as "(8, 12)" there); keys are added as extra lines.
    text_overrides = overrides if isinstance(overrides, str) else None
    given = (
        dict.fromkeys(re.findall(r"^(\w+):", text_overrides, flags=re.M))
        if text_overrides is not None
        else dict(overrides or {})
    )
    extra = {}
    if save_folder is not None:
        extra["save_folder"] = os.path.abspath(save_folder)
    with open(hparams_file) as f:
        text = f.read()
    extra.update(fill_placeholders(text, given))
    if text_overrides is None:
        overrides = {**given, **extra}
    else:
        lines = [
            ln
            for ln in text_overrides.splitlines()
            if ln.split(":")[0].strip() not in extra
        ]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        overrides = "\n".join(lines)
    # A named stream: `!include:` paths resolve against the YAML's folder.
    stream = io.StringIO(text)
    stream.name = hparams_file
    hparams = load_hyperpyyaml(stream, overrides)
    checkpointer = hparams.get("checkpointer")
    if checkpointer is None:
        raise ExportError(f"{hparams_file} has no `checkpointer`")
    key = {k: v for k, v in key.items() if v is not None}
    ckpt = checkpointer.find_checkpoint(**key)
    if ckpt is None:
        raise ExportError(
            f"No checkpoint in {checkpointer.checkpoints_dir}"
            + (f" with the key {key}" if key else "")
        )
    plan, history = PruningPlan(), []
    pruner_file = ckpt.paramfiles.get("pruner")
    if pruner_file:
        state = torch.load(pruner_file, weights_only=False)
        plan = PruningPlan.from_dict(state["plan"])
        history = state.get("history", [])
    modules = hparams["modules"]
    plan.apply(torch.nn.ModuleDict(modules))
    # The checkpointer loads the rest; the plan was applied above.
    pruner = checkpointer.recoverables.pop("pruner", None)
    try:
        checkpointer.load_checkpoint(ckpt)
    finally:
        if pruner is not None:
            checkpointer.recoverables = {
                "pruner": pruner,
                **checkpointer.recoverables,
            }
    for m in modules.values():
        m.eval()
    return hparams, plan, history, ckpt


def last_test_stats(train_log):
    """The last ``test ...`` statistics of a recipe's train log, or {}.

    Example
    -------
    >>> import tempfile
    >>> log = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> with open(log, "w") as f:
    ...     _ = f.write("Epoch loaded: 4 - test loss: 1.2, test WER: 9.5\\n")
    >>> last_test_stats(log)
    {'loss': 1.2, 'WER': 9.5}
    """
    if not train_log or not os.path.isfile(train_log):
        return {}
    with open(train_log) as f:
        lines = [ln for ln in f if " - test " in ln]
    stats = {}
    for part in lines[-1].split(" - ")[-1].split(", ") if lines else []:
        key, value = part.rsplit(": ", 1)
        stats[key.strip().removeprefix("test ")] = float(value)
    return stats


#: Where recipes keep their tokenizer in the save folder: the label
#: encoder the TIMIT/CTC recipes fit, the SentencePiece model a recipe's
#: ``Pretrainer`` collects (``collect_in: <save_folder>``).
TOKENIZER_FILES = ("label_encoder.txt", "tokenizer.ckpt")


def default_tokenizer(save_folder):
    """The run's tokenizer file in ``save_folder`` (see TOKENIZER_FILES).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> open(os.path.join(folder, "tokenizer.ckpt"), "w").close()
    >>> os.path.basename(default_tokenizer(folder))
    'tokenizer.ckpt'
    """
    for name in TOKENIZER_FILES:
        path = os.path.join(save_folder, name)
        if os.path.isfile(path):
            return path
    raise ExportError(
        f"No tokenizer in {save_folder} (looked for "
        f"{', '.join(TOKENIZER_FILES)}): give it with --tokenizer "
        "(a label encoder file or a SentencePiece model)"
    )


def export_recipe(
    hparams_file,
    save_folder,
    out,
    overrides=None,
    tokenizer=None,
    searcher_key=None,
    card=None,
    **key,
):
    """Exports a recipe's best checkpoint of its final pruned structure.

    Arguments
    ---------
    hparams_file : str
        The recipe's training YAML.
    save_folder : str
        The run's checkpoint folder.
    out : str
        The folder to write (see ``export_asr``).
    overrides : dict or str, optional
        YAML overrides of the run.
    tokenizer : str, optional
        Label encoder file or SentencePiece model (default: the run's
        ``label_encoder.txt`` in ``save_folder``).
    searcher_key : str, optional
        seq2seq: the YAML key of the searcher to ship (default: the first
        of ``test_search``, ``valid_search``, ...).
    card : dict, optional
        Model card extras; the run's last test error rates (train log)
        are added as ``pruned`` unless given.
    **key
        ``min_key``/``max_key``.

    Returns
    -------
    dict
        What ``export_asr`` returns, plus ``hparams``, ``plan``,
        ``history`` and ``checkpoint``.
    """
    from speechbrain_prune.export.folder import (
        export_asr,
        find_searcher,
        recipe_shape,
    )

    hparams, plan, history, ckpt = load_best(
        hparams_file, save_folder, overrides, **key
    )
    modules = hparams["modules"]
    shape = recipe_shape(modules)
    if tokenizer is None:
        tokenizer = default_tokenizer(hparams["save_folder"])
    info = dict(card or {})
    rates = dict(info.get("error_rates") or {})
    if "pruned" not in rates:
        stats = last_test_stats(hparams.get("train_log"))
        stats.pop("loss", None)
        if stats:
            rates["pruned"] = stats
    info["error_rates"] = rates
    info.setdefault("checkpoint", ckpt.path)
    result = export_asr(
        out,
        modules,
        hparams["compute_features"],
        tokenizer,
        searcher=find_searcher(hparams, searcher_key)
        if shape == "seq2seq"
        else None,
        blank_index=hparams.get("blank_index", 0),
        plan=plan,
        card=info,
        source=hparams_file,
    )
    result.update(hparams=hparams, plan=plan, history=history, checkpoint=ckpt)
    return result
