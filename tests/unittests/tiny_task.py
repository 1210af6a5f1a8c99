"""A tiny CTC task on synthetic features, to test importance scorers.

Each utterance is a sequence of 2 to 4 tokens; a token is a few frames of
its own random prototype vector plus noise, with short noisy silences
between tokens. A small CRDNN with a linear output head learns it with CTC
in a few dozen steps, so scores are measured on a model whose loss means
something. Trained models are cached per setting: every call returns fresh
copies.

Authors
 * speechbrain-prune team 2026
"""

import copy

import speechbrain as sb
import torch
from conftest import make_crdnn

N_FEATS = 20
VOCAB = 5  # blank (0) and four tokens
_CACHE = {}


def make_batches(n_batches, batch_size=8, seed=0):
    """``n_batches`` batches ``(feats, feat_lens, targets, target_lens)``.

    Lengths are relative (SpeechBrain's convention).

    Example
    -------
    >>> feats, feat_lens, targets, target_lens = make_batches(1)[0]
    >>> feats.shape[0], feats.shape[2], targets.shape[0]
    (8, 20, 8)
    """
    protos = _prototypes()
    g = torch.Generator().manual_seed(1000 + seed)
    batches = []
    for _ in range(n_batches):
        utts, labels = [], []
        for _ in range(batch_size):
            n_tok = int(torch.randint(2, 5, (1,), generator=g))
            toks = torch.randint(1, VOCAB, (n_tok,), generator=g)
            frames = [_silence(g)]
            for t in toks.tolist():
                dur = int(torch.randint(4, 9, (1,), generator=g))
                frames.append(
                    protos[t] + 0.3 * torch.randn(dur, N_FEATS, generator=g)
                )
                frames.append(_silence(g))
            utts.append(torch.cat(frames))
            labels.append(toks)
        batches.append(_collate(utts, labels))
    return batches


def _prototypes():
    g = torch.Generator().manual_seed(12345)
    protos = 1.5 * torch.randn(VOCAB, N_FEATS, generator=g)
    protos[0] = 0.0
    return protos


def _silence(g):
    dur = int(torch.randint(1, 4, (1,), generator=g))
    return 0.3 * torch.randn(dur, N_FEATS, generator=g)


def _collate(utts, labels):
    t_max = max(len(u) for u in utts)
    l_max = max(len(x) for x in labels)
    feats = torch.zeros(len(utts), t_max, N_FEATS)
    targets = torch.zeros(len(utts), l_max, dtype=torch.long)
    for i, (u, y) in enumerate(zip(utts, labels)):
        feats[i, : len(u)] = u
        targets[i, : len(y)] = y
    feat_lens = torch.tensor([len(u) / t_max for u in utts])
    target_lens = torch.tensor([len(y) / l_max for y in labels])
    return feats, feat_lens, targets, target_lens


def build_modules(seed=0, rnn="lstm"):
    """``ModuleDict`` with a small CRDNN (``model``) and its head (``output``).

    Example
    -------
    >>> mods = build_modules()
    >>> sorted(mods.keys())
    ['model', 'output']
    """
    model = make_crdnn(seed, N_FEATS, rnn)
    output = sb.nnet.linear.Linear(n_neurons=VOCAB, input_size=9)
    return torch.nn.ModuleDict({"model": model, "output": output})


def make_loss_fn(modules):
    """``loss_fn(batch) -> CTC loss`` of ``modules`` (read at call time).

    Example
    -------
    >>> mods = build_modules()
    >>> loss = make_loss_fn(mods)(make_batches(1)[0])
    >>> loss.dim()
    0
    """

    def loss_fn(batch):
        feats, feat_lens, targets, target_lens = batch
        logits = modules["output"](modules["model"](feats))
        log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
        return sb.nnet.losses.ctc_loss(
            log_probs, targets, feat_lens, target_lens, blank_index=0
        )

    return loss_fn


def run_forward(batch):
    """``run(root)``: one forward of a recipe root, for tracing and MACs."""
    feats = batch[0]

    def run(root):
        return root["output"](root["model"](feats))

    return run


def make_tiny_ctc_task(seed=0, rnn="lstm", n_batches=4, train_steps=60):
    """A small CRDNN trained for a few steps on the tiny CTC task.

    Arguments
    ---------
    seed : int
        Seed of the model's initialisation.
    rnn : str
        ``lstm``, ``gru`` or ``ligru``.
    n_batches : int
        Batches returned (held out from training).
    train_steps : int
        Adam steps on training batches (cached after the first call).

    Returns
    -------
    modules : torch.nn.ModuleDict
        ``model`` (CRDNN) and ``output`` (Linear), in eval mode.
    batches : list
        ``(feats, feat_lens, targets, target_lens)`` tuples.
    loss_fn : callable
        ``loss_fn(batch) -> scalar`` CTC loss of ``modules``.
    """
    key = (seed, rnn, train_steps)
    if key not in _CACHE:
        modules = build_modules(seed, rnn)
        loss_fn = make_loss_fn(modules)
        opt = torch.optim.Adam(modules.parameters(), lr=0.01)
        train = make_batches(8, seed=seed + 1)
        modules.train()
        for step in range(train_steps):
            opt.zero_grad()
            loss = loss_fn(train[step % len(train)])
            loss.backward()
            opt.step()
        modules.eval()
        _CACHE[key] = modules
    modules = copy.deepcopy(_CACHE[key])
    batches = make_batches(n_batches, seed=seed + 2)
    return modules, batches, make_loss_fn(modules)
