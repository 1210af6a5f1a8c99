"""Writes a hub-ready folder that SpeechBrain alone loads.

:func:`export_asr` takes a recipe's (pruned) modules and writes what the
official SpeechBrain hub models hold: ``hyperparams.yaml`` (stock classes
only, see :mod:`speechbrain_prune.export.architecture`), one weight file
per loadable, the tokenizer, ``config.json`` naming the inference
interface and a model card ``README.md``. Two recipe shapes:

- CTC (``model`` + ``output``): ``speechbrain.inference.ASR.EncoderASR``;
- attentional seq2seq with a CTC head (``enc``, ``emb``, ``dec``,
  ``ctc_lin``, ``seq_lin``): ``EncoderDecoderASR``, with the recipe's
  searcher (greedy or beam, CTC/coverage/length scorers) as ``decoder``.

A character or phoneme label encoder becomes ``CTCTextEncoder`` for
``EncoderASR``; ``EncoderDecoderASR`` decodes with ``decode_ids``, which
only SentencePiece has, so for seq2seq the labels are written as a
SentencePiece model with the same ids (:func:`labels_to_sentencepiece`).

Authors
 * speechbrain-prune team 2026
"""

import json
import os
import shutil

import torch

from speechbrain_prune.export.architecture import (
    Context,
    ExportError,
    Name,
    New,
    Ref,
    check_stock,
    map_state_dict,
    record_calls,
    to_stock,
    yaml_entry,
)

#: Module keys of each recipe shape (as in the recipes' ``modules``).
SHAPES = {
    "ctc": ("model", "output"),
    "seq2seq": ("enc", "emb", "dec", "ctc_lin", "seq_lin"),
}
INTERFACES = {"ctc": "EncoderASR", "seq2seq": "EncoderDecoderASR"}
#: Where the recipes keep their searcher, best first.
SEARCHER_KEYS = (
    "test_search",
    "test_searcher",
    "valid_search",
    "valid_searcher",
    "greedy_search",
    "searcher",
)


def recipe_shape(modules):
    """``"ctc"`` or ``"seq2seq"`` from the names of a recipe's modules.

    Example
    -------
    >>> recipe_shape({"model": None, "output": None, "normalize": None})
    'ctc'
    """
    for shape in ("seq2seq", "ctc"):
        if all(k in modules for k in SHAPES[shape]):
            return shape
    raise ExportError(
        f"Modules {sorted(modules)} match no recipe shape that can be "
        f"exported: CTC needs {list(SHAPES['ctc'])}, seq2seq needs "
        f"{list(SHAPES['seq2seq'])}"
    )


def find_searcher(hparams, key=None):
    """The recipe's searcher (``key``, or the first of SEARCHER_KEYS)."""
    keys = [key] if key else [k for k in SEARCHER_KEYS if k in hparams]
    if not keys or keys[0] not in hparams:
        raise ExportError(
            f"No searcher in the hyperparameters (looked for "
            f"{[key] if key else list(SEARCHER_KEYS)}); name it with "
            "--searcher"
        )
    return hparams[keys[0]]


# Tokenizers ------------------------------------------------------------------
def labels_to_sentencepiece(encoder, path):
    """Writes a SentencePiece model whose ids are ``encoder``'s indices.

    Single characters become character pieces (a space is SentencePiece's
    ``▁``), longer labels (phonemes) become words; special labels
    (blank, bos, eos) decode to nothing.

    Example
    -------
    >>> import tempfile, sentencepiece
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> enc = CTCTextEncoder()
    >>> enc.update_from_iterable(list("AB "), sequence_input=False)
    >>> enc.insert_blank(index=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "tok.model")
    >>> labels_to_sentencepiece(enc, path)
    >>> sp = sentencepiece.SentencePieceProcessor(model_file=path)
    >>> ids = enc.encode_sequence(list("AB A"))
    >>> sp.decode_ids([0] + ids) == "".join(enc.decode_ndim(ids))
    True
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    Piece = pb.ModelProto.SentencePiece
    labels = [encoder.ind2lab[i] for i in range(len(encoder.ind2lab))]
    special = {
        getattr(encoder, a)
        for a in ("blank_label", "bos_label", "eos_label", "unk_label")
        if hasattr(encoder, a)
    }
    words = any(len(str(lab)) > 1 for lab in labels if lab not in special)
    model = pb.ModelProto()
    for lab in labels:
        piece = model.pieces.add()
        text = str(lab).replace(" ", "\u2581")
        piece.piece = "\u2581" + text if words else text
        piece.score = 0.0
        piece.type = Piece.CONTROL if lab in special else Piece.NORMAL
    unk = model.pieces.add()
    unk.piece, unk.type = "<unk_sp>", Piece.UNKNOWN
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.CHAR
    spec.vocab_size = len(labels) + 1
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = len(labels), -1, -1, -1
    norm = model.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = words  # words: the first one's "▁" is dropped
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def _label_encoder(tokenizer):
    from speechbrain.dataio.encoder import CTCTextEncoder

    if isinstance(tokenizer, (str, os.PathLike)):
        enc = CTCTextEncoder()
        enc.load(str(tokenizer))
        return enc
    return tokenizer


def is_sentencepiece_file(path):
    """Whether ``path`` is a SentencePiece model file, whatever its name
    (``*.model``, or ``tokenizer.ckpt`` as a ``Pretrainer`` collects it).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "label_encoder.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("'a' => 0\\n")
    >>> is_sentencepiece_file(path)
    False
    """
    import sentencepiece

    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return False
    try:
        sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError):
        return False
    return True


def write_tokenizer(tokenizer, shape, folder):
    """Writes ``tokenizer.ckpt``; returns its YAML node.

    ``tokenizer``: a label encoder file (``label_encoder.txt``), a
    SentencePiece ``.model`` file, or the object (``CTCTextEncoder``,
    ``SentencePieceProcessor`` or SpeechBrain's ``SentencePiece``).
    """
    import sentencepiece
    from speechbrain.dataio.encoder import CTCTextEncoder

    dest = os.path.join(folder, "tokenizer.ckpt")
    if hasattr(tokenizer, "sp"):  # speechbrain.tokenizers.SentencePiece
        tokenizer = tokenizer.sp
    spm = New("sentencepiece.SentencePieceProcessor")
    if is_sentencepiece_file(tokenizer):
        shutil.copyfile(tokenizer, dest)
        return spm
    if isinstance(tokenizer, sentencepiece.SentencePieceProcessor):
        with open(dest, "wb") as f:
            f.write(tokenizer.serialized_model_proto())
        return spm
    enc = _label_encoder(tokenizer)
    if not isinstance(enc, CTCTextEncoder):
        raise ExportError(
            f"Tokenizer {tokenizer!r}: expected a label encoder file, a "
            "SentencePiece model or a CTCTextEncoder"
        )
    enc.save(os.path.join(folder, "label_encoder.txt"))
    if shape == "ctc":
        shutil.copyfile(os.path.join(folder, "label_encoder.txt"), dest)
        return New("speechbrain.dataio.encoder.CTCTextEncoder")
    labels_to_sentencepiece(enc, dest)
    return spm


# Searchers -------------------------------------------------------------------
SEARCHER_ALIASES = {"embedding": "emb", "decoder": "dec", "linear": "fc"}


def _init_params(cls):
    import inspect

    params = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params.setdefault(p.name, p)
    return params


def _plain_args(obj, skip=(), aliases=None):
    """Constructor arguments of ``obj`` read back from its attributes."""
    import inspect

    aliases = aliases or {}
    kwargs = {}
    for name, p in _init_params(type(obj)).items():
        if name in skip:
            continue
        attr = aliases.get(name, name)
        if hasattr(obj, attr):
            kwargs[name] = getattr(obj, attr)
        elif p.default is inspect.Parameter.empty:
            raise ExportError(
                f"{type(obj).__name__}: cannot read back argument {name!r}"
            )
    return kwargs


def searcher_nodes(searcher, names):
    """``(decoder node, extra top-level nodes)`` of a recipe's searcher.

    ``names`` maps module objects to their YAML keys (``emb``, ``dec``,
    ``seq_lin``, ``ctc_lin``).
    """
    from speechbrain.decoders import scorer as scorers

    cls = type(searcher)
    if not cls.__module__.startswith("speechbrain.decoders"):
        raise ExportError(f"Searcher {cls.__name__} is not SpeechBrain's")
    extra = {}
    kwargs = _plain_args(searcher, skip=("scorer",), aliases=SEARCHER_ALIASES)
    for k, v in list(kwargs.items()):
        if isinstance(v, torch.nn.Module):
            if v not in names:
                raise ExportError(f"Searcher's {k} is not an exported module")
            kwargs[k] = Ref(names[v])
    builder = getattr(searcher, "scorer", None)
    if builder is not None:
        known = {
            scorers.CTCScorer: {"ctc_fc"},
            scorers.CoverageScorer: set(),
            scorers.LengthScorer: set(),
        }
        refs = {"full": [], "partial": []}
        for kind in refs:
            for key, sc in getattr(builder, f"{kind}_scorers").items():
                if type(sc) not in known:
                    raise ExportError(
                        f"Scorer {type(sc).__name__} cannot be exported "
                        "(language models are separate hub models); "
                        "decode without it"
                    )
                args = _plain_args(sc)
                for m in known[type(sc)]:
                    args[m] = Ref(names[args[m]])
                extra[f"{key}_scorer"] = New(
                    f"speechbrain.decoders.scorer.{type(sc).__name__}", args
                )
                refs[kind].append(Ref(f"{key}_scorer"))
        used = list(builder.full_scorers) + list(builder.partial_scorers)
        extra["scorer"] = New(
            "speechbrain.decoders.scorer.ScorerBuilder",
            {
                "full_scorers": refs["full"],
                "partial_scorers": refs["partial"],
                "weights": {k: builder.weights[k] for k in used},
                "scorer_beam_scale": builder.scorer_beam_scale,
            },
        )
        kwargs["scorer"] = Ref("scorer")
    target = f"{cls.__module__}.{cls.__name__}"
    return New(target, kwargs), extra


# The folder ------------------------------------------------------------------
def _example_run(shape, modules, searcher=None, seconds=1.0, seed=0):
    """One forward pass of the recipe's inference path on fixed input."""
    gen = torch.Generator().manual_seed(seed)
    sr = 16000
    wav = torch.randn(2, int(seconds * sr), generator=gen) * 0.1
    lens = torch.tensor([1.0, 0.8])
    vocab = modules["emb"].num_embeddings if shape == "seq2seq" else 0
    tokens = torch.randint(vocab or 1, (2, 3), generator=gen)

    def run(root):
        feats = root["compute_features"](wav)
        feats = root["normalize"](feats, lens)
        if shape == "ctc":
            root["output"](root["model"](feats))
            return
        x = root["enc"](feats)
        root["ctc_lin"](x)
        h, _ = root["dec"](root["emb"](tokens), x, lens)
        root["seq_lin"](h)

    return run


def _load_block(shape, hparams_names):
    lines = ["pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer"]
    lines.append("    loadables:")
    for key in hparams_names:
        lines.append(f"        {key}: !ref <{key}>")
    lines.append("        normalizer: !ref <normalize>")
    lines.append("        tokenizer: !ref <tokenizer>")
    return "\n".join(lines) + "\n"


def export_asr(
    folder,
    modules,
    compute_features,
    tokenizer,
    searcher=None,
    blank_index=0,
    plan=None,
    card=None,
    source=None,
):
    """Writes a folder that ``EncoderASR``/``EncoderDecoderASR`` loads alone.

    Arguments
    ---------
    folder : str
        Destination (created).
    modules : dict
        The recipe's modules, pruned, with their weights (``normalize``
        and ``model``/``output`` or ``enc``/``emb``/``dec``/``ctc_lin``/
        ``seq_lin``).
    compute_features : torch.nn.Module
        The recipe's feature extractor (``Fbank``).
    tokenizer : str or object
        Label encoder file or object, or SentencePiece model/object.
    searcher : torch.nn.Module, optional
        seq2seq: the recipe's searcher (its settings are written).
    blank_index : int
        CTC: the blank's index (greedy decoding).
    plan : PruningPlan, optional
        Stored as ``plan.yaml`` and summarised in the model card.
    card : dict, optional
        Model card extras (see :func:`model_card`).
    source : str, optional
        The recipe's YAML file, named in the files.

    Returns
    -------
    dict
        ``stock``: the stock modules built and checked (name -> module),
        ``shape``, ``interface``.
    """
    shape = recipe_shape(modules)
    names = SHAPES[shape]
    if shape == "seq2seq" and searcher is None:
        raise ExportError("seq2seq export needs the recipe's searcher")
    os.makedirs(folder, exist_ok=True)
    root = torch.nn.ModuleDict({k: modules[k] for k in names + ("normalize",)})
    root["compute_features"] = compute_features
    modes = {m: m.training for m in root.modules()}
    root.eval()
    try:
        shapes, calls = record_calls(root, _example_run(shape, modules))
        nodes, stock = {}, {}
        for key in ("compute_features", "normalize") + names:
            prefix = key + "."
            ctx = Context(
                {
                    k[len(prefix) :]: v
                    for k, v in shapes.items()
                    if k.startswith(prefix)
                }
            )
            node, keymap = to_stock(root[key], ctx, "")
            if key == "normalize":  # statistics: its own file, below
                stock[key] = None
            elif key == "compute_features":  # built fresh at load time
                stock[key] = check_stock(
                    root[key], node, keymap, calls.get(key), key, load=False
                )
            else:
                stock[key] = check_stock(
                    root[key], node, keymap, calls.get(key), key
                )
                torch.save(
                    map_state_dict(root[key].state_dict(), keymap, key),
                    os.path.join(folder, f"{key}.ckpt"),
                )
            nodes[key] = node
    finally:
        for m, mode in modes.items():
            m.training = mode
    modules["normalize"]._save(os.path.join(folder, "normalizer.ckpt"))
    nodes["tokenizer"] = write_tokenizer(tokenizer, shape, folder)
    text = _hyperparams(shape, nodes, modules, searcher, blank_index, source)
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as f:
        f.write(text)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"speechbrain": {"interface": INTERFACES[shape]}}, f)
        f.write("\n")
    if plan is not None:
        plan.save(os.path.join(folder, "plan.yaml"))
    from speechbrain_prune.export.card import model_card

    info = dict(card or {})
    info.setdefault("source", source)
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write(
            model_card(folder, shape, modules, compute_features, plan, info)
        )
    return {"shape": shape, "interface": INTERFACES[shape], "stock": stock}


HEADER = """\
# ############################################################################
# {what}, structurally pruned with speechbrain-prune{source}.
# Built from SpeechBrain's own classes only (no plugin needed):
#     from speechbrain.inference.ASR import {interface}
#     asr = {interface}.from_hparams(source=FOLDER_OR_HUB_ID, savedir=...)
# The pruned layers keep the names of the original model; layers whose
# widths differ (RNN layers of one stack) are one-layer modules in a
# Sequential.
# ############################################################################

"""


def _hyperparams(shape, nodes, modules, searcher, blank_index, source):
    what = {
        "ctc": "CRDNN + CTC speech recogniser",
        "seq2seq": "CRDNN encoder + attentional decoder (joint CTC)",
    }[shape]
    parts = [
        HEADER.format(
            what=what,
            source=f" (recipe: {os.path.basename(source)})" if source else "",
            interface=INTERFACES[shape],
        )
    ]

    def add(key, node, comment=None):
        if comment:
            parts.append(f"# {comment}\n")
        parts.append(yaml_entry(key, node) + "\n")

    add("compute_features", nodes["compute_features"], "Front end")
    add("normalize", nodes["normalize"])
    log_softmax = New(
        "speechbrain.nnet.activations.Softmax", {"apply_log": True}
    )
    if shape == "ctc":
        add("model", nodes["model"], "The pruned CRDNN")
        add("output", nodes["output"], "CTC output layer")
        add("log_softmax", log_softmax)
        add(
            "encoder",
            New(
                "speechbrain.nnet.containers.LengthsCapableSequential",
                {
                    k: Ref(k)
                    for k in (
                        "compute_features",
                        "normalize",
                        "model",
                        "output",
                        "log_softmax",
                    )
                },
            ),
        )
        add(
            "decoding_function",
            Name(
                "speechbrain.decoders.ctc_greedy_decode",
                {"blank_id": blank_index},
            ),
            "Decoding",
        )
        add("tokenizer", nodes["tokenizer"])
        add("modules", dict({"encoder": Ref("encoder")}))
    else:
        add("enc", nodes["enc"], "The pruned CRDNN encoder")
        add("emb", nodes["emb"], "Attentional decoder and output layers")
        add("dec", nodes["dec"])
        add("ctc_lin", nodes["ctc_lin"])
        add("seq_lin", nodes["seq_lin"])
        add("log_softmax", log_softmax)
        names = {modules[k]: k for k in SHAPES["seq2seq"]}
        decoder, extra = searcher_nodes(searcher, names)
        for i, (k, node) in enumerate(extra.items()):
            add(k, node, "Search: the recipe's settings" if i == 0 else None)
        add(
            "encoder",
            New(
                "speechbrain.nnet.containers.LengthsCapableSequential",
                {k: Ref(k) for k in ("compute_features", "normalize", "enc")},
            ),
        )
        add("decoder", decoder, None if extra else "Search")
        add("tokenizer", nodes["tokenizer"])
        add(
            "modules",
            dict(
                {
                    "encoder": Ref("encoder"),
                    "decoder": Ref("decoder"),
                    "ctc_lin": Ref("ctc_lin"),
                }
            ),
        )
    parts.append(_load_block(shape, SHAPES[shape]))
    return "".join(parts)
