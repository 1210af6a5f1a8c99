"""A tiny SpeechBrain recipe with pruning stages, built from YAML in memory.

The tiny CTC task of ``tiny_task.py`` as a recipe: a YAML text loaded with
hyperpyyaml (seed, epoch counter, CRDNN, pruner, checkpointer), a Brain
whose ``on_stage_end`` saves checkpoints as SpeechBrain's recipes do, and
datasets of a few utterances. An epoch takes a fraction of a second, so
tests can train, stop and resume it many times.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from tiny_task import N_FEATS, make_batches

YAML = """
seed: 3
__set_seed: !apply:speechbrain.utils.seed_everything [!ref <seed>]
save_folder: !PLACEHOLDER
number_of_epochs: 2
prune_target: 0.4
prune_start_epoch: 2
prune_stages: 1
prune_every: 1
prune_scorer: taylor
scoring_batches: 2

epoch_counter: !new:speechbrain.utils.epoch_loop.EpochCounter
    limit: !ref <number_of_epochs>

model: !new:speechbrain.lobes.models.CRDNN.CRDNN
    input_size: {n_feats}
    cnn_blocks: 1
    cnn_channels: [6]
    cnn_kernelsize: (3, 3)
    time_pooling: False
    rnn_class: !name:speechbrain.nnet.RNN.GRU
    rnn_layers: 1
    rnn_neurons: 8
    rnn_bidirectional: True
    dnn_blocks: 1
    dnn_neurons: 10

output: !new:speechbrain.nnet.linear.Linear
    input_size: 10
    n_neurons: 5

modules:
    model: !ref <model>
    output: !ref <output>

opt_class: !name:torch.optim.Adam
    lr: 0.01

pruner: !new:speechbrain_prune.Pruner
    scorer: !apply:speechbrain_prune.scorers.get_scorer
        name_or_instance: !ref <prune_scorer>
        n_batches: !ref <scoring_batches>
        progress: False
    target: !ref <prune_target>
    start_epoch: !ref <prune_start_epoch>
    n_stages: !ref <prune_stages>
    every: !ref <prune_every>
    selection:
        target_type: macs
        min_keep_fraction: 0.2

{checkpointer}
"""

PRUNING_CHECKPOINTER = """
checkpointer: !new:speechbrain_prune.PruningCheckpointer
    pruner: !ref <pruner>
    checkpoints_dir: !ref <save_folder>
    recoverables:
        model: !ref <model>
        output: !ref <output>
        counter: !ref <epoch_counter>
"""

#: Half of the two-part edit: a pruner, but SpeechBrain's own checkpointer.
STOCK_CHECKPOINTER = """
checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer
    checkpoints_dir: !ref <save_folder>
    recoverables:
        model: !ref <model>
        output: !ref <output>
        counter: !ref <epoch_counter>
"""


class TinyASR(sb.Brain):
    """CTC over the CRDNN's output; checkpoints at each validation end."""

    def compute_forward(self, batch, stage):
        """Log-probabilities and relative lengths."""
        batch = batch.to(self.device)
        feats, lens = batch.feats
        logits = self.modules.output(self.modules.model(feats))
        return torch.nn.functional.log_softmax(logits, dim=-1), lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss."""
        log_probs, lens = predictions
        tokens, token_lens = batch.tokens
        return sb.nnet.losses.ctc_loss(
            log_probs, tokens, lens, token_lens, blank_index=0
        )

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Saves a checkpoint after validation (keeps the best by loss)."""
        if stage == sb.Stage.VALID and self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(
                meta={"loss": float(stage_loss)}, min_keys=["loss"]
            )


def utterances(n, seed):
    """``n`` examples ``{"id", "feats", "tokens"}`` of the tiny task."""
    out = []
    for b, (feats, feat_lens, tokens, token_lens) in enumerate(
        make_batches((n + 3) // 4, batch_size=4, seed=seed)
    ):
        for i in range(feats.shape[0]):
            t = int(round(float(feat_lens[i]) * feats.shape[1]))
            k = int(round(float(token_lens[i]) * tokens.shape[1]))
            out.append(
                {
                    "id": f"u{b}_{i}",
                    "feats": feats[i, :t].clone(),
                    "tokens": tokens[i, :k].clone(),
                }
            )
    return out[:n]


#: The YAML's pruner block, which ``build(pruner=...)`` replaces.
PRUNER = YAML[YAML.index("pruner: !new") : YAML.index("{checkpointer}")]


def build(
    save_folder,
    overrides=None,
    stock_checkpointer=False,
    n_train=12,
    pruner=None,
    **opts,
):
    """``(brain, hparams, datasets)`` of the tiny recipe.

    Arguments
    ---------
    save_folder : str
        Where checkpoints go.
    overrides : dict, optional
        YAML overrides (``number_of_epochs``, ``prune_target``, ...).
    stock_checkpointer : bool
        Declare SpeechBrain's own ``Checkpointer`` (half of the edit).
    n_train : int
        Training utterances (batches of 4).
    pruner : str, optional
        Another ``pruner: !new:...`` block (YAML text) for the recipe's.
    **opts
        ``run_opts`` of the Brain (e.g. ``ckpt_interval_steps``).
    """
    text = YAML if pruner is None else YAML.replace(PRUNER, pruner + "\n")
    text = text.format(
        n_feats=N_FEATS,
        checkpointer=STOCK_CHECKPOINTER
        if stock_checkpointer
        else PRUNING_CHECKPOINTER,
    )
    hparams = load_hyperpyyaml(
        text, dict(overrides or {}, save_folder=str(save_folder))
    )
    datasets = {"train": utterances(n_train, 0), "valid": utterances(4, 1)}
    brain = TinyASR(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=dict({"device": "cpu", "noprogressbar": True}, **opts),
        checkpointer=hparams["checkpointer"],
    )
    return brain, hparams, datasets


def fit(brain, hparams, datasets, batch_size=4):
    """``brain.fit`` over the recipe's epoch counter."""
    collate = sb.dataio.batch.PaddedBatch
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs={
            "batch_size": batch_size,
            "shuffle": True,
            "collate_fn": collate,
        },
        valid_loader_kwargs={"batch_size": batch_size, "collate_fn": collate},
    )


def final_state(brain):
    """Detached copies of every tensor of ``brain.modules``."""
    return {
        k: v.detach().clone() for k, v in brain.modules.state_dict().items()
    }
