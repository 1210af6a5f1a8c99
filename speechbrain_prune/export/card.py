"""The model card (``README.md``) of an exported folder.

It says what a hub user needs to trust and use the model: the recipe it
comes from, the widths kept per layer (and the dense ones, from the plan),
parameters, MACs, measured CPU latency, error rates of the dense and the
pruned model when they are known, and how to load it.

Authors
 * speechbrain-prune team 2026
"""

import platform

import speechbrain as sb
import torch

from speechbrain_prune.costs import count_macs, count_params
from speechbrain_prune.costs.latency import measure_latency
from speechbrain_prune.surgery.modules import StackedRNN

ENCODER = {"ctc": ("model", "output"), "seq2seq": ("enc", "ctc_lin")}


def layer_widths(module, prefix=""):
    """``[(layer name, kind, width)]`` of the pruned layers of ``module``.

    RNN layers are named ``<rnn>.layer<i>``, as the plan names them.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> net = CRDNN(input_size=8, cnn_blocks=1, cnn_channels=[4],
    ...     inter_layer_pooling_size=[2], rnn_layers=1, rnn_neurons=5,
    ...     dnn_blocks=1, dnn_neurons=6, rnn_class=sb.nnet.RNN.GRU)
    >>> for row in layer_widths(net): print(row)
    ('CNN.block_0.conv_1', 'conv', 4)
    ('CNN.block_0.conv_2', 'conv', 4)
    ('RNN.layer0', 'GRU', 5)
    ('DNN.block_0.linear', 'linear', 6)
    """
    rows = []
    for name, m in module.named_modules(prefix=prefix):
        if isinstance(m, sb.nnet.CNN.Conv2d):
            rows.append((name, "conv", m.conv.out_channels))
        elif isinstance(m, sb.nnet.linear.Linear):
            rows.append((name, "linear", m.w.out_features))
        elif isinstance(m, (sb.nnet.RNN.LSTM, sb.nnet.RNN.GRU)):
            kind = type(m).__name__
            if isinstance(m.rnn, StackedRNN):
                hidden = [layer.hidden_size for layer in m.rnn.layers]
            else:
                hidden = [m.rnn.hidden_size] * m.rnn.num_layers
            rows += [
                (f"{name}.layer{i}", kind, h) for i, h in enumerate(hidden)
            ]
        elif isinstance(m, sb.nnet.RNN.LiGRU):
            rows += [
                (f"{name}.layer{i}", "LiGRU", layer.hidden_size)
                for i, layer in enumerate(m.rnn)
            ]
    return rows


def dense_widths(plan):
    """``group id -> width before pruning`` (first step that cut it)."""
    sizes = {}
    for step in plan.steps if plan is not None else []:
        for group in step.get("groups", []):
            sizes.setdefault(group["id"], group["size"])
    return sizes


def _width_table(modules, shape, plan):
    dense = dense_widths(plan)
    key = ENCODER[shape][0]
    lines = ["| layer | kind | kept width | dense width |", "|---|---|---|---|"]
    for name, kind, width in layer_widths(modules[key], key):
        bare = name.split(".", 1)[1] if "." in name else name
        before = dense.get(name, dense.get(bare, width))
        lines.append(f"| {name} | {kind} | {width} | {before} |")
    return "\n".join(lines)


def encoder_costs(modules, shape, n_mels, seconds=10.0, repeats=5):
    """Params, MACs and CPU latency (batch 1) of the encoder path.

    The path is the CRDNN and its CTC layer on ``seconds`` of features
    (100 frames a second); the decoder's per-token cost is left out.
    """
    first, head = ENCODER[shape]
    net = torch.nn.Sequential(modules[first], modules[head])
    x = torch.rand(1, int(seconds * 100), n_mels)
    params = sum(
        count_params(modules[k])
        for k in ENCODER[shape] + ("emb", "dec")
        if k in modules and k != "seq_lin"
    )
    if shape == "seq2seq":
        params += count_params(modules["seq_lin"])
    modes = {m: m.training for m in net.modules()}
    net.eval()
    try:
        macs = count_macs(net, run=lambda m: m(x))
        threads = torch.get_num_threads()
        latency = measure_latency(net, x, repeats=repeats)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return {
        "params": params,
        "MMACs": macs / 1e6,
        "latency ms": latency * 1000,
        "threads": threads,
    }


def _errors(info):
    rates = info.get("error_rates") or {}
    if not rates:
        return "Not measured for this export."
    keys = sorted({k for v in rates.values() for k in v})
    lines = ["| model | " + " | ".join(keys) + " |"]
    lines.append("|---|" + "---|" * len(keys))
    for model, values in rates.items():
        cells = [f"{values[k]:.2f}" if k in values else "-" for k in keys]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if info.get("test_set"):
        lines.append(f"\nTest set: {info['test_set']}.")
    return "\n".join(lines)


CARD = """\
---
library_name: speechbrain
tags:
- automatic-speech-recognition
- {tag}
- speechbrain
- pruning
- pytorch
---

# {title}

A CRDNN speech recogniser whose conv channels, RNN hidden units and dense
neurons were physically removed with speechbrain-prune (structured
pruning). The folder is a plain SpeechBrain model: `hyperparams.yaml`
builds the pruned architecture from SpeechBrain's own classes, so loading
it needs SpeechBrain only.

- Source recipe: {source}
- Interface: `speechbrain.inference.ASR.{interface}`

## How to load it

```python
from speechbrain.inference.ASR import {interface}

asr = {interface}.from_hparams(source="FOLDER_OR_HUB_ID", savedir="pretrained")
print(asr.transcribe_file("utterance.wav"))
```

## Size and speed

| params | MMACs (10 s of audio) | CPU latency ms (batch 1, 10 s) |
|---|---|---|
| {params} | {mmacs:.2f} | {latency:.2f} |

{cost_note}
Latency measured at export on {machine} ({threads} torch threads), median
of {repeats} runs{latency_note}.

## Kept widths per layer

{widths}

## Pruning plan

```
{plan}
```

## Error rates

{errors}

## Files

`hyperparams.yaml` (architecture, front end, decoding), {weights},
`normalizer.ckpt` (feature statistics), `tokenizer.ckpt` ({tokenizer}),
`config.json` (the interface, for the hub), `plan.yaml` (the pruning plan,
for reference; loading does not use it).
"""


def model_card(folder, shape, modules, compute_features, plan, info):
    """The text of ``README.md`` for an exported folder.

    ``info`` may hold ``source`` (recipe), ``title``, ``error_rates``
    (``{"dense": {"WER": ..}, "pruned": {..}}``), ``test_set``,
    ``latency_repeats`` and ``costs`` (measured elsewhere: ``params``,
    ``MMACs``, ``latency ms``, ``threads``).
    """
    n_mels = compute_features.compute_fbanks.n_mels
    repeats = info.get("latency_repeats", 5)
    costs = info.get("costs") or encoder_costs(
        modules, shape, n_mels, repeats=repeats
    )
    if shape == "ctc":
        weights = "`model.ckpt`, `output.ckpt`"
        tokenizer = "the label encoder"
        cost_note = "MACs and latency: CRDNN + CTC layer."
    else:
        weights = (
            "`enc.ckpt`, `emb.ckpt`, `dec.ckpt`, `ctc_lin.ckpt`, `seq_lin.ckpt`"
        )
        tokenizer = "a SentencePiece model"
        cost_note = (
            "MACs and latency: the encoder and its CTC layer (the "
            "attentional decoder adds a per-token cost)."
        )
    return CARD.format(
        tag="CTC" if shape == "ctc" else "seq2seq",
        title=info.get("title")
        or {"ctc": "Pruned CRDNN + CTC", "seq2seq": "Pruned CRDNN seq2seq"}[
            shape
        ],
        source=f"`{info['source']}`" if info.get("source") else "not given",
        interface="EncoderASR" if shape == "ctc" else "EncoderDecoderASR",
        params=costs["params"],
        mmacs=costs["MMACs"],
        latency=costs["latency ms"],
        cost_note=cost_note,
        machine=info.get("machine") or platform.processor() or "CPU",
        threads=costs.get("threads", torch.get_num_threads()),
        repeats=repeats,
        latency_note=info.get("latency_note", ""),
        widths=_width_table(modules, shape, plan),
        plan=plan.summary() if plan is not None and len(plan) else "(none)",
        errors=_errors(info),
        weights=weights,
        tokenizer=tokenizer,
    )
