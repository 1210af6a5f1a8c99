"""SpeechBrain's own recipes, copied from a checkout and edited as a user
would: the offline edits (no downloads) and the pruning edit.

``SPEECHBRAIN_REPO`` points at a checkout of speechbrain/speechbrain (its
recipes are not in the pip package); tests skip without it. The corpora of
``../shared/data`` are cut to a few speakers (symbolic links, same layout)
so that a run takes seconds of CPU per epoch.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

#: The pruning edit of a stock recipe (README, docs/stock_recipes.md): a
#: preset pulled in with ``!include:`` and the checkpointer's class.
PRUNING_EDIT = """\
prune_start_epoch: 2
pruning: !include:pruning/{preset}
    start_epoch: !ref <prune_start_epoch>
    scoring_batches: 4

checkpointer: !new:speechbrain_prune.PruningCheckpointer
    pruner: !ref <pruning[pruner]>
"""
STOCK_CHECKPOINTER = (
    "checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer\n"
)
#: Fewer CPU threads than cores: other tests may run beside these.
ENV = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def checkout():
    """The SpeechBrain checkout, or skip."""
    repo = os.environ.get("SPEECHBRAIN_REPO")
    if not repo or not os.path.isdir(os.path.join(repo, "recipes", "TIMIT")):
        pytest.skip(
            "SPEECHBRAIN_REPO does not point at a checkout of "
            "speechbrain/speechbrain (its recipes are not in the pip package)"
        )
    return repo


def cut(text, start, end, replacement=""):
    """``text`` with ``[start, end)`` (markers; end kept) replaced."""
    i = text.index(start)
    j = text.index(end, i)
    return text[:i] + replacement + text[j:]


def offline(text):
    """A stock YAML that downloads nothing: no noise set, no hub LM.

    The noise augmentation downloads its noise files; the LibriSpeech
    seq2seq recipe also takes an RNNLM and a tokenizer from the hub
    (the tokenizer is then trained locally; see ``train_tokenizer``).
    """
    if "prepare_noise_data:" in text:
        text = cut(
            text,
            "prepare_noise_data:",
            "# Speed perturbation",
            "prepare_noise_data: !name:builtins.print  # offline\n\n",
        )
        text = text.replace("augmentations: 4", "augmentations: 3")
        text = re.sub(r"!ref <add_noise>,\s*", "", text)
    if "lm_model:" in text:
        text = cut(text, "# This is the RNNLM", "tokenizer: !new:")
        text = text.replace("   lm_model: !ref <lm_model>\n", "")
        text = cut(text, "rnnlm_scorer:", "\nscorer: !new:")
        text = re.sub(
            r"full_scorers: \[!ref <rnnlm_scorer>,\s*", "full_scorers: [", text
        )
        text = text.replace("      rnnlm: !ref <lm_weight>\n", "")
        text = text.replace("      lm: !ref <lm_model>\n", "")
        text = text.replace(
            "      lm: !ref <pretrained_lm_tokenizer_path>/lm.ckpt\n", ""
        )
    assert "!ref <add_noise>" not in text
    assert "!ref <lm_model>" not in text
    return text


def with_pruning(text, preset):
    """The stock YAML with the pruning edit."""
    assert STOCK_CHECKPOINTER in text, "the stock checkpointer has changed"
    after = text[text.index(STOCK_CHECKPOINTER) + len(STOCK_CHECKPOINTER) :]
    indent = after[: len(after) - len(after.lstrip(" "))]
    edit = PRUNING_EDIT.format(preset=preset).replace("    ", indent)
    return text.replace(STOCK_CHECKPOINTER, edit)


def copy_recipe(repo, dataset, kind, yaml_name, dest, preset):
    """Copies a stock recipe to ``dest``: train.py, the data preparation,
    ``hparams/train.yaml`` (offline) and ``hparams/train_pruned.yaml``
    (offline + pruning), the presets in ``hparams/pruning``."""
    src = os.path.join(repo, "recipes", dataset, "ASR", kind)
    os.makedirs(os.path.join(dest, "hparams"), exist_ok=True)
    shutil.copy(os.path.join(src, "train.py"), dest)
    prepare = f"{dataset.lower()}_prepare.py"
    shutil.copy(os.path.join(repo, "recipes", dataset, prepare), dest)
    with open(os.path.join(src, "hparams", yaml_name)) as f:
        text = offline(f.read())
    with open(os.path.join(dest, "hparams", "train.yaml"), "w") as f:
        f.write(text)
    with open(os.path.join(dest, "hparams", "train_pruned.yaml"), "w") as f:
        f.write(with_pruning(text, preset))
    subprocess.run(
        [sys.executable, "-m", "speechbrain_prune.presets", "--copy"]
        + [os.path.join(dest, "hparams", "pruning")],
        check=True,
        capture_output=True,
        env=dict(ENV, PYTHONPATH=ROOT),
    )
    return dest


def run(workdir, yaml_name, args):
    """``python train.py hparams/YAML ARGS`` in ``workdir``; the result."""
    cmd = [sys.executable, "train.py", f"hparams/{yaml_name}"] + args
    res = subprocess.run(
        cmd, capture_output=True, text=True, cwd=workdir, env=ENV
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


# Tiny corpora -----------------------------------------------------------------
def _link(src, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.symlink(src, dest)


def tiny_timit(src, dest, repo, n_train=4, n_dev=2, n_test=2):
    """TIMIT layout: a few dev and test speakers of the stock lists and the
    fewest training speakers whose phones cover theirs (upper case)."""
    sys.path.insert(0, os.path.join(repo, "recipes", "TIMIT"))
    try:
        from timit_prepare import _get_speaker
    finally:
        sys.path.pop(0)
    dev_spk, test_spk = _get_speaker()

    def speakers(split):
        root = os.path.join(src, split)
        return sorted(
            (d, s) for d in os.listdir(root) for s in os.listdir(f"{root}/{d}")
        )

    def phones(split, dr, spk):
        out = set()
        folder = os.path.join(src, split, dr, spk)
        for name in os.listdir(folder):
            if name.endswith(".PHN") and not name.startswith("SA"):
                with open(os.path.join(folder, name)) as f:
                    out.update(line.split()[-1] for line in f if line.strip())
        return out

    needed = set()
    test = speakers("TEST")
    for wanted, n in ((dev_spk, n_dev), (test_spk, n_test)):
        chosen = [(d, s) for d, s in test if s.lower() in wanted][:n]
        for dr, spk in chosen:
            _link(f"{src}/TEST/{dr}/{spk}", f"{dest}/TEST/{dr}/{spk}")
            needed |= phones("TEST", dr, spk)
    covered, n = set(), 0
    for dr, spk in speakers("TRAIN"):  # DR1 first: the prepare's check
        if n < n_train or not needed <= covered:
            n += 1
            _link(f"{src}/TRAIN/{dr}/{spk}", f"{dest}/TRAIN/{dr}/{spk}")
            covered |= phones("TRAIN", dr, spk)
    os.makedirs(f"{dest}/TEST/DR1", exist_ok=True)  # the prepare's check
    assert needed <= covered, needed - covered
    return dest


def tiny_librispeech(src, dest, n_utts):
    """LibriSpeech layout: whole chapters, about ``n_utts`` per split."""
    for split, n in n_utts.items():
        count = 0
        for spk in sorted(os.listdir(os.path.join(src, split))):
            for chapter in sorted(os.listdir(os.path.join(src, split, spk))):
                if count >= n:
                    break
                folder = os.path.join(src, split, spk, chapter)
                _link(folder, os.path.join(dest, split, spk, chapter))
                count += sum(f.endswith(".flac") for f in os.listdir(folder))
    return dest


def train_tokenizer(repo, data, dest, vocab):
    """SpeechBrain's stock LibriSpeech Tokenizer recipe (unchanged), on
    ``data``; the model in hub layout: ``dest/tokenizer.ckpt``."""
    src = os.path.join(repo, "recipes", "LibriSpeech", "Tokenizer")
    work = os.path.join(dest, "recipe")
    shutil.copytree(src, work, symlinks=False)
    out = os.path.join(dest, "out")
    run(
        work,
        "1K_unigram_subword_bpe.yaml",
        [
            f"--data_folder={data}",
            f"--output_folder={out}",
            f"--token_output={vocab}",
            "--train_splits=[train-clean-100]",
            "--test_splits=[test-clean]",
        ],
    )
    model = os.path.join(out, f"{vocab}_unigram.model")
    shutil.copy(model, os.path.join(dest, "tokenizer.ckpt"))
    return dest
