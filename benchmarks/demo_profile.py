#!/usr/bin/env python3
"""Where the main job's models spend their CPU time, part by part.

Two measurements behind README.md's "What the main job shows" (issue 18):

* ``folders``: each exported model of a finished ``speechbrain-prune demo``
  (``OUT/models/<name>``, loaded by SpeechBrain's ``EncoderASR``) timed
  part by part: Fbank, the CRDNN's CNN, time pooling, RNN and DNN, the
  output layer, and the whole encoder (waveform to log-probabilities);
* ``widths``: CRDNNs of random weights built from the recipe's
  constructor, each dense architecture side by side with the same one
  with its GRU at 0.7 of its width and with one GRU layer fewer (ratio to
  dense): whether a narrower GRU is faster at all.

CPU, batch 1, 10 s of audio (features at 100 frames/s), ``--threads``
torch threads. Run it alone on the machine (other work only adds time;
the fastest of ``--rounds`` medians is printed)::

    OMP_NUM_THREADS=1 python benchmarks/demo_profile.py folders \\
        results/demo dense taylor_50 random_50
    OMP_NUM_THREADS=1 python benchmarks/demo_profile.py widths

Authors
 * speechbrain-prune team 2026
"""

import argparse
import statistics
import time

import torch

#: ``name -> (cnn_channels, rnn_neurons, rnn_layers, dnn_neurons)``: the
#: previous demo's CRDNN and the current one (speechbrain_prune.demo.MODEL).
ARCHITECTURES = {
    "old demo 16/32, 2x96 GRU": ((16, 32), 96, 2, 96),
    "demo 8/16, 2x256 GRU": ((8, 16), 256, 2, 256),
}


def median_ms(fn, repeats=10):
    """Median milliseconds of ``fn()`` over ``repeats`` runs (1 warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def parts(encoder, wav, repeats=10):
    """Milliseconds of each part of an exported CRDNN encoder."""
    lens = torch.ones(1)
    res = {"Fbank": median_ms(lambda: encoder.compute_features(wav), repeats)}
    x = encoder.normalize(encoder.compute_features(wav), lens)
    for name, module in encoder.model.named_children():
        res[name] = median_ms(lambda: module(x), repeats)
        x = module(x)
        x = x[0] if isinstance(x, tuple) else x
    res["output"] = median_ms(
        lambda: encoder.log_softmax(encoder.output(x)), repeats
    )
    res["whole encoder"] = median_ms(lambda: encoder(wav, lens), repeats)
    return res


def profile_folders(out, names, rounds=3):
    """Prints a Markdown table: part x model, fastest of ``rounds``."""
    from speechbrain_prune.export import load_asr

    wav = 0.1 * torch.randn(
        1, 160000, generator=torch.Generator().manual_seed(0)
    )
    encoders = {
        n: load_asr(f"{out}/models/{n}").mods.encoder.eval() for n in names
    }
    best = {n: {} for n in names}
    with torch.no_grad():
        for _ in range(rounds):
            for n in names:
                for part, ms in parts(encoders[n], wav).items():
                    best[n][part] = min(ms, best[n].get(part, ms))
    print("| part (ms) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for part in best[names[0]]:
        cells = " | ".join(f"{best[n][part]:.1f}" for n in names)
        print(f"| {part} | {cells} |")


def crdnn(channels, neurons, layers, dnn):
    """A CTC CRDNN of the recipe (random weights, eval mode)."""
    import speechbrain as sb
    from speechbrain.lobes.models.CRDNN import CRDNN

    return CRDNN(
        input_size=40,
        cnn_blocks=len(channels),
        cnn_channels=channels,
        time_pooling=True,
        rnn_class=sb.nnet.RNN.GRU,
        rnn_layers=layers,
        rnn_neurons=neurons,
        rnn_bidirectional=True,
        dnn_blocks=1,
        dnn_neurons=dnn,
        dropout=0.0,
    ).eval()


def profile_widths(rounds=3):
    """Prints, per architecture, the latency ratio of a narrower GRU and
    of one GRU layer fewer to the dense one (timed alternately)."""
    x = torch.randn(1, 1001, 40, generator=torch.Generator().manual_seed(0))
    for name, (ch, neurons, layers, dnn) in ARCHITECTURES.items():
        models = {
            "dense": crdnn(ch, neurons, layers, dnn),
            "GRU x0.7 width": crdnn(ch, int(0.7 * neurons), layers, dnn),
            "one GRU layer fewer": crdnn(ch, neurons, layers - 1, dnn),
        }
        best = {}
        with torch.no_grad():
            for _ in range(rounds):
                for k, m in models.items():
                    ms = median_ms(lambda: m(x))
                    best[k] = min(ms, best.get(k, ms))
        dense = best["dense"]
        ratios = ", ".join(
            f"{k} x{v / dense:.2f}" for k, v in best.items() if k != "dense"
        )
        print(f"{name}: dense {dense:.1f} ms; {ratios}")


def main(argv=None):
    """The command line (see the module's docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("folders", "widths"))
    p.add_argument("out", nargs="?", default="results/demo")
    p.add_argument("names", nargs="*", default=["dense", "taylor_50"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "folders":
        profile_folders(args.out, args.names, args.rounds)
    else:
        profile_widths(args.rounds)


if __name__ == "__main__":
    main()
