"""Command line: ``speechbrain-prune <command>``.

Commands
--------
demo : the main job (see ``speechbrain_prune.demo``).
report : per-layer cost table (params, MACs, share) and the dependency
    groups of a model built from a HyperPyYAML file.
export : the best checkpoint of a recipe's final pruned structure as a
    folder that SpeechBrain alone loads (``speechbrain_prune.export``).
deploy : ``model.onnx`` and ``model.int8.onnx`` written into an exported
    CTC folder (``speechbrain_prune.deploy``).

Authors
 * speechbrain-prune team 2026
"""

import argparse
import os
import sys

import torch

PRESETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hparams")


def preset_path(name):
    """Path of a YAML file: as given, or one of the bundled presets.

    Example
    -------
    >>> os.path.basename(preset_path("timit_ctc_crdnn"))
    'timit_ctc_crdnn.yaml'
    """
    if os.path.isfile(name):
        return name
    candidate = os.path.join(
        PRESETS, name if name.endswith(".yaml") else name + ".yaml"
    )
    if os.path.isfile(candidate):
        return candidate
    known = sorted(f[:-5] for f in os.listdir(PRESETS) if f.endswith(".yaml"))
    raise FileNotFoundError(
        f"No YAML file {name!r}; give a path or one of the presets {known}"
    )


def load_module(yaml_path, key, overrides=None):
    """Builds the YAML file and returns its entry ``key`` (a module)."""
    from hyperpyyaml import load_hyperpyyaml

    with open(preset_path(yaml_path)) as f:
        hparams = load_hyperpyyaml(f, overrides or {})
    if key not in hparams:
        modules = [
            k for k, v in hparams.items() if isinstance(v, torch.nn.Module)
        ]
        raise KeyError(
            f"{yaml_path} has no key {key!r}; modules there: {modules}"
        )
    return hparams[key], hparams


def cmd_report(args):
    from speechbrain_prune.costs.report import cost_table, format_cost_table
    from speechbrain_prune.graph import discover_groups

    module, hparams = load_module(args.hparams, args.module)
    n_feats = args.n_feats or hparams.get("n_mels", 40)
    shape = (args.batch, args.frames, n_feats)
    module.eval()
    x = torch.rand(*shape)

    def run(m):
        out = m
        for name in args.chain.split(","):
            out = m[name](x if out is m else out)
        return out

    forward = run if isinstance(module, torch.nn.ModuleDict) else x
    rows = cost_table(module, run=forward)
    title = (
        f"{args.hparams} [{args.module}], input {tuple(shape)} "
        f"({args.frames / 100:.1f} s of audio at 100 frames/s)"
    )
    print(format_cost_table(rows, title))
    print()
    groups = discover_groups(module, forward)
    print(f"### Dependency groups ({len(groups.prunable())} prunable)")
    print()
    print(groups.describe())


def cmd_export(args):
    from speechbrain_prune.export.select import export_recipe

    overrides = "\n".join(args.overrides or [])
    card = {"title": args.title} if args.title else None
    res = export_recipe(
        args.hparams,
        args.save_folder,
        args.out,
        overrides=overrides,
        tokenizer=args.tokenizer,
        searcher_key=args.searcher,
        card=card,
        min_key=args.min_key,
        max_key=args.max_key,
    )
    print(
        f"Exported {res['checkpoint'].path} ({len(res['plan'])} pruning "
        f"steps) to {args.out}: load it with speechbrain.inference.ASR."
        f"{res['interface']}.from_hparams(source={args.out!r})"
    )


def cmd_deploy(args):
    from speechbrain_prune.deploy.folder import deploy_folder

    info = deploy_folder(args.folder, atol=args.atol)
    err = info["max_abs_error_vs_pytorch"]
    for kind in ("fp32", "int8"):
        print(
            f"{os.path.join(args.folder, info['files'][kind])}: "
            f"{info['bytes'][kind] / 1e6:.2f} MB, max abs error vs "
            f"PyTorch {err[kind]:.1e}"
        )
    print(
        f"Try it: python {args.folder}/transcribe_onnx.py {args.folder} A.wav"
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="speechbrain-prune",
        description="Structured pruning of SpeechBrain CRDNN models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="per-layer cost table and groups")
    rep.add_argument(
        "hparams",
        nargs="?",
        default="timit_ctc_crdnn",
        help="YAML file or preset name (default: %(default)s)",
    )
    rep.add_argument(
        "--module",
        default="modules",
        help="YAML key of the module (default: %(default)s)",
    )
    rep.add_argument(
        "--chain",
        default="model,output",
        help="for a ModuleDict: keys applied in order",
    )
    rep.add_argument(
        "--frames",
        type=int,
        default=1000,
        help="input frames (100 per second; default 1000)",
    )
    rep.add_argument("--batch", type=int, default=1)
    rep.add_argument(
        "--n_feats",
        type=int,
        default=None,
        help="features per frame (default: the YAML's n_mels)",
    )
    rep.set_defaults(func=cmd_report)
    exp = sub.add_parser(
        "export",
        help="best checkpoint of the final pruned structure -> a folder "
        "that SpeechBrain alone loads (model hub layout)",
    )
    exp.add_argument("hparams", help="the recipe's training YAML")
    exp.add_argument("save_folder", help="the run's checkpoint folder")
    exp.add_argument("out", help="the folder to write")
    key = exp.add_mutually_exclusive_group()
    key.add_argument("--min-key", dest="min_key", help="e.g. WER, CER, PER")
    key.add_argument("--max-key", dest="max_key")
    exp.add_argument(
        "--overrides",
        nargs="*",
        help="YAML overrides of the run, e.g. 'rnn_neurons: 24'",
    )
    exp.add_argument(
        "--tokenizer",
        help="label encoder file or SentencePiece .model "
        "(default: label_encoder.txt in the save folder)",
    )
    exp.add_argument(
        "--searcher",
        help="seq2seq: YAML key of the searcher to ship "
        "(default: test_search, valid_search, ...)",
    )
    exp.add_argument("--title", help="model card title")
    exp.set_defaults(func=cmd_export)
    dep = sub.add_parser(
        "deploy",
        help="write model.onnx and model.int8.onnx (ONNX Runtime, CPU) "
        "into a CTC folder written by export",
    )
    dep.add_argument("folder", help="a folder written by export (CTC)")
    dep.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest allowed fp32 ONNX vs PyTorch difference "
        "(default: %(default)s)",
    )
    dep.set_defaults(func=cmd_deploy)
    demo = sub.add_parser(
        "demo",
        help="train a CRDNN on embedded speech, prune it with every "
        "criterion, fine-tune, test, export (options: demo --help)",
        add_help=False,
    )
    demo.set_defaults(func=None)
    return parser


def main(argv=None):
    """Entry point of the ``speechbrain-prune`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        from speechbrain_prune.demo import main as demo_main

        demo_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, KeyError, ValueError) as e:  # ExportError too
        print(f"speechbrain-prune: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
