#!/usr/bin/env python3
"""Recipe: CRDNN + CTC phone recognition on a corpus in TIMIT layout.

Shaped like SpeechBrain's stock TIMIT CTC recipe (``recipes/TIMIT/ASR/CTC``
of the SpeechBrain repository): waveform augmentation (speed, frequency
drop, chunk drop; no noise set, which would be downloaded) -> Fbank ->
``model`` (CRDNN with LiGRU) -> ``output`` (Linear) -> CTC over the 39
folded TIMIT phones, greedy decoding, PER with SpeechBrain's
``ErrorRateStats``. Nothing in this file knows about pruning: the pruning
stages come from the YAML file alone (``hparams/train_pruned.yaml``).

Without ``--data_folder`` it speaks its own small TIMIT-layout corpus with
eSpeak NG (``speechbrain_prune.data.timit_corpus``), so it runs with no
download.

To run::

    python train.py hparams/train.yaml --data_folder /path/to/TIMIT
    python train.py hparams/train_pruned.yaml --data_folder /path/to/TIMIT

Authors
 * speechbrain-prune team 2026
"""

import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_prune.data.timit import phone_set, prepare_timit
from speechbrain_prune.data.timit_corpus import make_timit_corpus


class ASR(sb.Brain):
    """CTC phone recogniser."""

    def compute_forward(self, batch, stage):
        """Waveforms -> log-probabilities of phones."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        if stage == sb.Stage.TRAIN and self.hparams.augment:
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        out = self.modules.output(self.modules.model(feats))
        return self.hparams.log_softmax(out), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; PER of greedy transcripts outside training."""
        pout, pout_lens = predictions
        phns, phn_lens = batch.phn_encoded
        if stage == sb.Stage.TRAIN and self.hparams.augment:
            phns = self.hparams.wav_augment.replicate_labels(phns)
            phn_lens = self.hparams.wav_augment.replicate_labels(phn_lens)
        loss = self.hparams.compute_cost(pout, phns, pout_lens, phn_lens)
        if stage != sb.Stage.TRAIN:
            self.ctc_metrics.append(batch.id, pout, phns, pout_lens, phn_lens)
            hyps = sb.decoders.ctc_greedy_decode(
                pout, pout_lens, blank_id=self.hparams.blank_index
            )
            self.per_metrics.append(
                ids=batch.id,
                predict=hyps,
                target=phns,
                target_len=phn_lens,
                ind2lab=self.label_encoder.decode_ndim,
            )
        return loss

    def on_stage_start(self, stage, epoch):
        """Fresh metric trackers for every evaluation stage."""
        if stage != sb.Stage.TRAIN:
            self.ctc_metrics = self.hparams.ctc_stats()
            self.per_metrics = self.hparams.per_stats()

    def on_stage_end(self, stage, stage_loss, epoch):
        """Logs, anneals the learning rate, keeps the best checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        per = self.per_metrics.summarize("error_rate")
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(per)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": old_lr},
                train_stats={"loss": self.train_loss},
                valid_stats={"loss": stage_loss, "PER": per},
            )
            self.checkpointer.save_and_keep_only(
                meta={"PER": per}, min_keys=["PER"]
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats={"loss": stage_loss, "PER": per},
            )
            if sb.utils.distributed.if_main_process():
                with open(self.hparams.test_wer_file, "w") as f:
                    f.write("CTC loss stats:\n")
                    self.ctc_metrics.write_stats(f)
                    f.write("\nPER stats:\n")
                    self.per_metrics.write_stats(f)


def dataio_prepare(hparams):
    """Datasets with the ``sig`` and ``phn_encoded`` pipelines."""
    datasets = {}
    for split in ("train", "valid", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=hparams[f"{split}_csv"]
        )
    datasets["train"] = sort_training_set(datasets["train"], hparams)
    for split in ("valid", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="duration")

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    label_encoder = sb.dataio.encoder.CTCTextEncoder()

    @sb.utils.data_pipeline.takes("phn")
    @sb.utils.data_pipeline.provides("phn_list", "phn_encoded")
    def text_pipeline(phn):
        phn_list = phn.split()
        yield phn_list
        yield label_encoder.encode_sequence_torch(phn_list)

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    # The whole phone set, not the phones the training data happens to
    # hold: the output layer's size does not depend on the data.
    label_encoder.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_iterables=[[phone_set(hparams["phn_set"])]],
        special_labels={"blank_label": hparams["blank_index"]},
        sequence_input=True,
    )
    label_encoder.expect_len(hparams["output_neurons"])
    sb.dataio.dataset.set_output_keys(all_sets, ["id", "sig", "phn_encoded"])
    return datasets, label_encoder


def sort_training_set(train_set, hparams):
    """Sorts by duration as ``sorting`` says (then without shuffling)."""
    sorting = hparams["sorting"]
    if sorting == "random":
        return train_set
    if sorting not in ("ascending", "descending"):
        raise ValueError(
            f"sorting: {sorting!r}; use ascending, descending or random"
        )
    hparams["train_dataloader_opts"]["shuffle"] = False
    return train_set.filtered_sorted(
        sort_key="duration", reverse=sorting == "descending"
    )


def prepare_data(hparams):
    """Makes the embedded corpus if no data folder is given; writes csvs."""
    data_folder = hparams["data_folder"]
    if not data_folder:
        data_folder = hparams["embedded_data_folder"]
        make_timit_corpus(data_folder, **hparams["embedded_corpus"])
    prepare_timit(
        data_folder,
        hparams["save_folder"],
        phn_set=hparams["phn_set"],
        skip_prep=hparams["skip_prep"],
    )


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    # Initialize ddp (useful only for multi-GPU DDP training)
    sb.utils.distributed.ddp_init_group(run_opts)

    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    sb.utils.distributed.run_on_main(prepare_data, kwargs={"hparams": hparams})
    datasets, label_encoder = dataio_prepare(hparams)

    asr_brain = ASR(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    asr_brain.label_encoder = label_encoder
    asr_brain.fit(
        asr_brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    asr_brain.evaluate(
        datasets["test"],
        min_key="PER",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
