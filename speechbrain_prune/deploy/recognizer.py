"""The module that is deployed: features in, CTC log-probabilities out.

:class:`CTCRecognizer` chains what SpeechBrain's ``EncoderASR`` runs after
its feature extractor: global mean/variance normalisation, the (pruned)
CRDNN, the CTC output layer and a log-softmax. Feature extraction
(``Fbank``: STFT, mel filterbank, log) is the caller's step: it is the
unpruned front end, identical for every model of a recipe, and
``torch.stft`` does not export to ONNX from SpeechBrain's ``STFT`` (it
uses complex tensors). The normalisation statistics are buffers of the
graph, so a caller gives raw filterbank features.

Authors
 * speechbrain-prune team 2026
"""

import torch


class DeployError(ValueError):
    """A model cannot be deployed as asked; the message says why."""


class GlobalNorm(torch.nn.Module):
    """``(x - mean) / std`` with the stored statistics of a global
    ``InputNormalization`` (what it computes in eval mode).

    Arguments
    ---------
    mean : torch.Tensor
        Per-feature mean.
    std : torch.Tensor
        Per-feature standard deviation (ones when ``std_norm`` is off).
    epsilon : float
        Lower bound of ``std``, as ``InputNormalization``.

    Example
    -------
    >>> from speechbrain.processing.features import InputNormalization
    >>> norm = InputNormalization()
    >>> _ = norm(torch.randn(4, 30, 5) * 3 + 1, torch.ones(4))
    >>> x = torch.rand(2, 7, 5)
    >>> g = GlobalNorm.from_input_normalization(norm.eval())
    >>> torch.allclose(g(x), norm(x, torch.ones(2)))
    True
    """

    def __init__(self, mean, std, epsilon=1e-10):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())
        self.epsilon = float(epsilon)

    @classmethod
    def from_input_normalization(cls, norm):
        """Reads the statistics of SpeechBrain's ``InputNormalization``."""
        if norm.norm_type != "global":
            raise DeployError(
                f"normalize: norm_type {norm.norm_type!r} needs the "
                "utterance lengths at run time; only 'global' is deployed "
                "(statistics stored in the graph)"
            )
        if norm.glob_mean.numel() == 0:
            raise DeployError(
                "normalize: InputNormalization has no statistics (it never "
                "saw data and normalizer.ckpt was not loaded)"
            )
        std = norm.glob_std
        if not getattr(norm, "std_norm", True):
            std = torch.ones_like(std)
        return cls(norm.glob_mean, std, getattr(norm, "epsilon", 1e-10))

    def forward(self, x):
        """Normalises ``x`` (batch, time, features)."""
        return (x - self.mean) / self.std.clamp(min=self.epsilon)


class CTCRecognizer(torch.nn.Module):
    """Pruned CRDNN + CTC head: ``(batch, time, n_mels)`` filterbank
    features -> ``(batch, time', vocabulary)`` log-probabilities.

    Arguments
    ---------
    model : torch.nn.Module
        The CRDNN (pruned or not; stock classes or surgery's modules).
    output : torch.nn.Module
        The CTC output layer.
    normalize : torch.nn.Module, optional
        ``GlobalNorm`` (or an ``InputNormalization``, converted); None when
        the caller normalises.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> from speechbrain.nnet.linear import Linear
    >>> crdnn = CRDNN(input_size=20, cnn_channels=[4, 4], rnn_neurons=8,
    ...               dnn_neurons=6, rnn_layers=1, dnn_blocks=1).eval()
    >>> rec = CTCRecognizer(crdnn, Linear(5, input_size=6)).eval()
    >>> lp = rec(torch.rand(2, 30, 20))
    >>> lp.shape, torch.allclose(lp.exp().sum(-1), torch.ones(2, 30))
    (torch.Size([2, 30, 5]), True)
    """

    def __init__(self, model, output, normalize=None):
        super().__init__()
        from speechbrain.processing.features import InputNormalization

        if isinstance(normalize, InputNormalization):
            normalize = GlobalNorm.from_input_normalization(normalize)
        self.normalize = normalize
        self.model = model
        self.output = output

    def forward(self, feats):
        """Log-probabilities of ``feats`` (batch, time, n_mels)."""
        if self.normalize is not None:
            feats = self.normalize(feats)
        logits = self.output(self.model(feats))
        return torch.log_softmax(logits, dim=-1)

    @classmethod
    def from_modules(cls, modules):
        """From a CTC recipe's modules (``model``, ``output``,
        ``normalize``), e.g. the ``modules`` of its YAML file."""
        missing = [k for k in ("model", "output") if k not in modules]
        if missing:
            raise DeployError(
                f"modules {sorted(modules)} lack {missing}: only CTC "
                "recipes (model + output) are deployed"
            )
        return cls(
            modules["model"], modules["output"], modules.get("normalize")
        )

    @classmethod
    def from_folder(cls, folder):
        """From a folder written by ``speechbrain-prune export`` (CTC).

        Returns ``(recognizer, asr)``: the recognizer in eval mode and
        SpeechBrain's ``EncoderASR`` that loaded the folder.
        """
        from speechbrain_prune.export import load_asr

        asr = load_asr(folder)
        hp = vars(asr.hparams)
        if "output" not in hp or "model" not in hp:
            raise DeployError(
                f"{folder}: not a CTC folder (hyperparams.yaml has no "
                "'model' and 'output'); seq2seq decoders are not deployed"
            )
        return cls.from_modules(hp).eval(), asr
