#!/usr/bin/env python3
"""Recipe: CRDNN encoder + attentional GRU decoder, joint CTC/attention.

A plain SpeechBrain recipe in the style of the stock LibriSpeech seq2seq
recipe (``recipes/LibriSpeech/ASR/seq2seq``): ``enc`` (CRDNN) feeds the CTC
head ``ctc_lin`` and the attentional decoder ``dec``; training minimises
``ctc_weight * CTC + (1 - ctc_weight) * NLL``; greedy decoding. Characters
are the output units (no tokenizer to train). Pruning stages come from the
YAML file alone (``hparams/train_pruned.yaml``).

To run::

    python train.py hparams/train_pruned.yaml

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
    """Attentional encoder-decoder speech recogniser."""

    def compute_forward(self, batch, stage):
        """Waveforms -> CTC and decoder log-probabilities (and hypotheses)."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        tokens_bos, _ = batch.tokens_bos
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        x = self.modules.enc(feats.detach())
        e_in = self.modules.emb(tokens_bos)
        h, _ = self.modules.dec(e_in, x, wav_lens)
        p_seq = self.hparams.log_softmax(self.modules.seq_lin(h))
        p_ctc = None
        if self.ctc_in_use(stage):
            p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(x))
        hyps = None
        if stage != sb.Stage.TRAIN:
            hyps, _, _, _ = self.hparams.greedy_search(x, wav_lens)
        return p_ctc, p_seq, wav_lens, hyps

    def ctc_in_use(self, stage):
        """CTC in training up to ``number_of_ctc_epochs``; always outside."""
        if stage != sb.Stage.TRAIN:
            return True
        epoch = self.hparams.epoch_counter.current
        return epoch <= self.hparams.number_of_ctc_epochs

    def compute_objectives(self, predictions, batch, stage):
        """Joint CTC/attention loss; error rates outside training."""
        p_ctc, p_seq, wav_lens, hyps = predictions
        tokens_eos, tokens_eos_lens = batch.tokens_eos
        tokens, tokens_lens = batch.tokens
        loss = self.hparams.seq_cost(p_seq, tokens_eos, tokens_eos_lens)
        if p_ctc is not None:
            loss_ctc = self.hparams.ctc_cost(
                p_ctc, tokens, wav_lens, tokens_lens
            )
            w = self.hparams.ctc_weight
            loss = w * loss_ctc + (1 - w) * loss
        if stage != sb.Stage.TRAIN:
            words = [
                "".join(self.label_encoder.decode_ndim(h)).split() for h in hyps
            ]
            targets = [t.split() for t in batch.wrd]
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
    """Datasets with audio and bos/eos token pipelines."""
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
    bos, eos = hparams["bos_index"], hparams["eos_index"]

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens_bos", "tokens_eos", "tokens")
    def text_pipeline(wrd):
        ids = label_encoder.encode_sequence(list(wrd))
        yield torch.LongTensor([bos] + ids)
        yield torch.LongTensor(ids + [eos])
        yield torch.LongTensor(ids)

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    # A fixed alphabet; index 0 is the CTC blank and the bos/eos symbol.
    label_encoder.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_iterables=[[list(hparams["characters"])]],
        special_labels={"blank_label": hparams["blank_index"]},
        sequence_input=True,
    )
    sb.dataio.dataset.set_output_keys(
        all_sets, ["id", "sig", "tokens_bos", "tokens_eos", "tokens", "wrd"]
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
