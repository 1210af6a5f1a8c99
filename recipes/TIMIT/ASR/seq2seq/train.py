#!/usr/bin/env python3
"""Recipe: CRDNN encoder + attentional GRU decoder, joint CTC, on TIMIT.

Shaped like SpeechBrain's stock TIMIT seq2seq recipe
(``recipes/TIMIT/ASR/seq2seq`` of the SpeechBrain repository): ``enc``
(CRDNN with LiGRU) feeds the attentional decoder ``dec`` (through ``emb``
and ``seq_lin``) and a CTC head ``ctc_lin``; training minimises
``ctc_weight * CTC + (1 - ctc_weight) * NLL``. As in SpeechBrain's
LibriSpeech seq2seq recipe, the CTC head is used for the first
``number_of_ctc_epochs`` epochs only; after them training is NLL alone and
``ctc_lin`` takes no part in the forward (the stock TIMIT recipe keeps it
for every epoch: set ``number_of_ctc_epochs`` to ``number_of_epochs``).
Greedy search on the validation set, beam search on the test set, PER over
the 39 folded TIMIT phones with SpeechBrain's ``ErrorRateStats``. Pruning
stages come from the YAML file alone (``hparams/train_pruned.yaml``).

Without ``--data_folder`` it speaks its own small TIMIT-layout corpus with
eSpeak NG, so it runs with no download.

To run::

    python train.py hparams/train.yaml --data_folder /path/to/TIMIT
    python train.py hparams/train_pruned.yaml --data_folder /path/to/TIMIT

Authors
 * speechbrain-prune team 2026
"""

import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_prune.data.timit import phone_set, prepare_timit
from speechbrain_prune.data.timit_corpus import make_timit_corpus


class ASR(sb.Brain):
    """Attentional encoder-decoder phone recogniser with a CTC head."""

    def ctc_epoch(self, stage):
        """Whether the CTC head trains now (first ``number_of_ctc_epochs``)."""
        epoch = self.hparams.epoch_counter.current
        return (
            stage == sb.Stage.TRAIN
            and epoch <= self.hparams.number_of_ctc_epochs
        )

    def compute_forward(self, batch, stage):
        """Waveforms -> decoder (and CTC) log-probabilities, hypotheses."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        phns_bos, _ = batch.phn_encoded_bos
        if stage == sb.Stage.TRAIN and self.hparams.augment:
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
            phns_bos = self.hparams.wav_augment.replicate_labels(phns_bos)
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        x = self.modules.enc(feats)
        e_in = self.modules.emb(phns_bos)
        h, _ = self.modules.dec(e_in, x, wav_lens)
        p_seq = self.hparams.log_softmax(self.modules.seq_lin(h))
        p_ctc = None
        if self.ctc_epoch(stage):
            p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(x))
        hyps = None
        if stage == sb.Stage.VALID:
            hyps, _, _, _ = self.hparams.valid_searcher(x, wav_lens)
        elif stage == sb.Stage.TEST:
            hyps, _, _, _ = self.hparams.test_searcher(x, wav_lens)
        return p_ctc, p_seq, wav_lens, hyps

    def compute_objectives(self, predictions, batch, stage):
        """NLL (+ CTC in the CTC epochs); PER outside training."""
        p_ctc, p_seq, wav_lens, hyps = predictions
        phns, phn_lens = batch.phn_encoded
        phns_eos, phn_lens_eos = batch.phn_encoded_eos
        if stage == sb.Stage.TRAIN and self.hparams.augment:
            replicate = self.hparams.wav_augment.replicate_labels
            phns, phn_lens = replicate(phns), replicate(phn_lens)
            phns_eos, phn_lens_eos = (
                replicate(phns_eos),
                replicate(phn_lens_eos),
            )
        loss = self.hparams.seq_cost(p_seq, phns_eos, phn_lens_eos)
        if p_ctc is not None:
            loss_ctc = self.hparams.ctc_cost(p_ctc, phns, wav_lens, phn_lens)
            w = self.hparams.ctc_weight
            loss = w * loss_ctc + (1 - w) * loss
        if stage != sb.Stage.TRAIN:
            self.seq_metrics.append(batch.id, p_seq, phns_eos, phn_lens_eos)
            self.per_metrics.append(
                batch.id,
                hyps,
                phns,
                None,
                phn_lens,
                self.label_encoder.decode_ndim,
            )
        return loss

    def on_stage_start(self, stage, epoch):
        """Fresh metric trackers for every evaluation stage."""
        if stage != sb.Stage.TRAIN:
            self.seq_metrics = self.hparams.seq_stats()
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
                    f.write("seq2seq loss stats:\n")
                    self.seq_metrics.write_stats(f)
                    f.write("\nPER stats:\n")
                    self.per_metrics.write_stats(f)


def dataio_prepare(hparams):
    """Datasets with audio and phone (plain, bos, eos) pipelines."""
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
    @sb.utils.data_pipeline.provides(
        "phn_encoded", "phn_encoded_eos", "phn_encoded_bos"
    )
    def text_pipeline(phn):
        ids = label_encoder.encode_sequence(phn.split())
        yield torch.LongTensor(ids)
        yield torch.LongTensor(label_encoder.append_eos_index(ids))
        yield torch.LongTensor(label_encoder.prepend_bos_index(ids))

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    # The whole phone set, so the output size does not depend on the data.
    label_encoder.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_iterables=[[phone_set(hparams["phn_set"])]],
        special_labels={
            "bos_label": hparams["bos_index"],
            "eos_label": hparams["eos_index"],
            "blank_label": hparams["blank_index"],
        },
        sequence_input=True,
    )
    label_encoder.expect_len(hparams["output_neurons"])
    sb.dataio.dataset.set_output_keys(
        all_sets,
        ["id", "sig", "phn_encoded", "phn_encoded_eos", "phn_encoded_bos"],
    )
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
