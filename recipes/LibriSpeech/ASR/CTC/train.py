#!/usr/bin/env python3
"""Recipe: CRDNN + CTC speech recognition on a LibriSpeech-layout corpus.

A plain SpeechBrain recipe in the style of the stock TIMIT CTC recipe
(``recipes/TIMIT/ASR/CTC``): features -> ``model`` (CRDNN) -> ``output``
(Linear) -> CTC, characters as output units, greedy decoding, WER and CER.
Nothing in this file knows about pruning: the pruning stages come from the
YAML file alone (see ``hparams/train_pruned.yaml``).

Without ``--data_folder`` it speaks its own small connected-digits corpus
with eSpeak NG (``speechbrain_prune.data``), so it runs with no download.

To run::

    python train.py hparams/train_pruned.yaml
    python train.py hparams/train.yaml \
        --data_folder ../shared/data/digits-librispeech

Authors
 * speechbrain-prune team 2026
"""

import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_prune.data import make_digits_corpus, prepare_csv


class ASR(sb.Brain):
    """CTC speech recogniser."""

    def compute_forward(self, batch, stage):
        """Waveforms -> log-probabilities of characters."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        out = self.modules.model(feats)
        out = self.modules.output(out)
        return self.hparams.log_softmax(out), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; error rates of greedy transcripts outside training."""
        pout, pout_lens = predictions
        chars, char_lens = batch.char_encoded
        loss = self.hparams.compute_cost(pout, chars, pout_lens, char_lens)
        if stage != sb.Stage.TRAIN:
            hyps = sb.decoders.ctc_greedy_decode(
                pout, pout_lens, blank_id=self.hparams.blank_index
            )
            words = [
                "".join(self.label_encoder.decode_ndim(h)).split() for h in hyps
            ]
            targets = [w.split() for w in batch.wrd]
            self.wer_metric.append(batch.id, words, targets)
            self.cer_metric.append(
                batch.id,
                [list(" ".join(w)) for w in words],
                [list(" ".join(t)) for t in targets],
            )
        return loss

    def on_stage_start(self, stage, epoch):
        """Fresh error-rate trackers for every evaluation stage."""
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.cer_metric = self.hparams.error_rate_computer()

    def on_stage_end(self, stage, stage_loss, epoch):
        """Logs, anneals the learning rate, keeps the best checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {
            "loss": stage_loss,
            "WER": self.wer_metric.summarize("error_rate"),
            "CER": self.cer_metric.summarize("error_rate"),
        }
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stats["CER"])
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": old_lr},
                train_stats={"loss": self.train_loss},
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"CER": stats["CER"]}, min_keys=["CER"]
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            if sb.utils.distributed.if_main_process():
                with open(self.hparams.test_wer_file, "w") as f:
                    self.wer_metric.write_stats(f)


def dataio_prepare(hparams):
    """Datasets with the ``sig`` and ``char_encoded`` pipelines."""
    datasets = {}
    for split in ("train", "valid", "test"):
        ds = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=hparams[f"{split}_csv"]
        )
        datasets[split] = ds.filtered_sorted(sort_key="duration")

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    label_encoder = sb.dataio.encoder.CTCTextEncoder()

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("char_list", "char_encoded")
    def text_pipeline(wrd):
        char_list = list(wrd)
        yield char_list
        yield torch.LongTensor(label_encoder.encode_sequence(char_list))

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    lab_file = os.path.join(hparams["save_folder"], "label_encoder.txt")
    # A fixed alphabet: the output layer's size does not depend on the data.
    label_encoder.load_or_create(
        path=lab_file,
        from_iterables=[[list(hparams["characters"])]],
        special_labels={"blank_label": hparams["blank_index"]},
        sequence_input=True,
    )
    sb.dataio.dataset.set_output_keys(
        all_sets, ["id", "sig", "char_encoded", "wrd"]
    )
    return datasets, label_encoder


def prepare_data(hparams):
    """Makes the embedded corpus if no data folder is given; writes csvs."""
    data_folder = hparams["data_folder"]
    if not data_folder:
        data_folder = hparams["embedded_data_folder"]
        make_digits_corpus(data_folder, **hparams["embedded_corpus"])
    prepare_csv(data_folder, hparams["save_folder"])


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
    if "pretrainer" in hparams:  # start from a pretrained model
        sb.utils.distributed.run_on_main(hparams["pretrainer"].collect_files)
        hparams["pretrainer"].load_collected()

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
        min_key="CER",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
