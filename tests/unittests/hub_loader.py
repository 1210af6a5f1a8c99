"""Loads exported folders with SpeechBrain alone (run as a subprocess).

``python hub_loader.py JOBS.json``: blocks ``import speechbrain_prune``
first (a ``sys.meta_path`` finder), checks that the import fails, then for
each job loads the folder with the interface its ``config.json`` names
(``from_hparams(source, savedir)``, network off) and saves its outputs
on the job's fixed inputs to the job's ``out`` file.
"""

import importlib.abc
import json
import sys


class BlockPlugin(importlib.abc.MetaPathFinder):
    """Makes ``speechbrain_prune`` impossible to import."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "speechbrain_prune":
            raise ModuleNotFoundError(f"{name} is blocked in this process")
        return None


def main(jobs_file):
    sys.meta_path.insert(0, BlockPlugin())
    try:
        import speechbrain_prune  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("speechbrain_prune could be imported")

    import torch
    from speechbrain.inference import ASR
    from speechbrain.utils.fetching import FetchConfig

    with open(jobs_file) as f:
        jobs = json.load(f)
    for job in jobs:
        with open(job["config"]) as f:
            interface = json.load(f)["speechbrain"]["interface"]
        asr = getattr(ASR, interface).from_hparams(
            source=job["source"],
            savedir=job["savedir"],
            run_opts={"device": "cpu"},
            fetch_config=FetchConfig(allow_network=False),
        )
        inputs = torch.load(job["inputs"])
        wavs, lens = inputs["wavs"], inputs["lens"]
        out = {}
        with torch.no_grad():
            enc = asr.encode_batch(wavs, lens)
            if interface == "EncoderASR":
                out["log_probs"] = enc
            else:
                hp = asr.hparams
                out["ctc_log_probs"] = hp.log_softmax(hp.ctc_lin(enc))
                h, _ = hp.dec(hp.emb(inputs["tokens"]), enc, lens)
                out["seq_log_probs"] = hp.log_softmax(hp.seq_lin(h))
            words, tokens = asr.transcribe_batch(wavs, lens)
            out["words"] = list(words)
            out["tokens"] = [[int(t) for t in h] for h in tokens]
        out["modules"] = sorted(
            {type(m).__module__ for m in asr.mods.modules()}
        )
        torch.save(out, job["out"])


if __name__ == "__main__":
    main(sys.argv[1])
