"""Where and how latency is measured: device, threads, batch, length, dtype.

A latency target means nothing without the conditions it holds under: a
CRDNN's CPU time at batch 1 follows its RNN width, its GPU time at batch 16
follows its depth. :class:`LatencySetup` states them, as a plain object a
recipe's YAML builds::

    prune_latency: !new:speechbrain_prune.LatencySetup
        device: cpu
        threads: 2
        batch_size: 1
        seconds: 10.0

and turns the recipe's own forward (``compute_forward`` at ``Stage.VALID``,
eval mode, no gradients) into one timed run on a batch of that shape, made
from a real training example whose waveform is repeated to the length.

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import weakref

import speechbrain as sb
import torch

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
STAGES = {"valid": sb.Stage.VALID, "test": sb.Stage.TEST}


class LatencySetup:
    """The conditions a latency target holds under.

    Arguments
    ---------
    device : str
        ``cpu`` or ``cuda`` (``cuda:1``, ...), whatever the run trains on.
    threads : int, optional
        CPU threads while timing (default 2 on CPU; ignored on GPUs).
    batch_size : int
        Utterances per forward.
    seconds : float
        Length of each utterance.
    dtype : str
        ``float32``, or ``bfloat16`` / ``float16`` (autocast).
    stage : str
        The forward timed: ``valid`` (default) or ``test``, as the recipe's
        ``compute_forward`` runs it.
    sample_rate : int
        Of the waveforms, to turn ``seconds`` into samples.
    repeats, warmup, rounds : int
        Per measurement: timed runs (median), untimed runs first, and
        alternations with the reference model (see
        :func:`~speechbrain_prune.costs.latency.build_latency_table`).
    fractions : sequence of float
        Widths of each group the latency table measures, as fractions.
    width_steps : sequence of int, optional
        Widths where an RNN layer's latency jumps (cuDNN's LSTM/GRU kernel
        switch at 192 hidden units): the table measures torch RNN layers
        (LSTM, GRU, RNN; not LiGRU) on both sides (192, and 200: the next
        multiple of 8, as odd widths may be slow themselves), and
        ``selection: {round_to: table}`` may land on the fast one.
        Default: ``[192]`` on CUDA, none on the CPU (no cuDNN there; each
        step is two more timed models per layer).
    timer : callable, optional
        ``timer(model, run, repeats, warmup) -> seconds`` instead of real
        timing (:func:`~speechbrain_prune.costs.latency.measure_latency`):
        a simulated device, for tests and what-if studies.

    Example
    -------
    >>> setup = LatencySetup(batch_size=1, seconds=2.0)
    >>> setup.key
    'cpu-2threads-b1-2s-float32-f0.75_0.5_0.25'
    >>> LatencySetup(device="cuda", batch_size=16).key
    'cuda-b16-10s-float32-f0.75_0.5_0.25-w192'
    >>> tokens = torch.ones(3, dtype=torch.long)
    >>> item = {"id": "u1", "sig": torch.rand(8000), "tokens": tokens}
    >>> batch = setup.batch_from(item)
    >>> batch.sig.data.shape, batch.tokens.data.shape
    (torch.Size([1, 32000]), torch.Size([1, 3]))
    """

    def __init__(
        self,
        device="cpu",
        threads=None,
        batch_size=1,
        seconds=10.0,
        dtype="float32",
        stage="valid",
        sample_rate=16000,
        repeats=10,
        warmup=2,
        rounds=3,
        fractions=(0.75, 0.5, 0.25),
        width_steps=None,
        timer=None,
    ):
        self.timer = timer
        self.device = torch.device(device)
        if threads is None and self.device.type == "cpu":
            threads = 2
        self.threads = None if threads is None else _whole("threads", threads)
        self.batch_size = _whole("batch_size", batch_size)
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"`seconds` must be > 0, got {seconds!r}")
        self.seconds = float(seconds)
        if dtype not in DTYPES:
            raise ValueError(
                f"Unknown `dtype` {dtype!r}; use one of {list(DTYPES)}"
            )
        self.dtype = dtype
        if stage not in STAGES:
            raise ValueError(
                f"Unknown `stage` {stage!r}; use one of {list(STAGES)}"
            )
        self.stage = stage
        self.sample_rate = _whole("sample_rate", sample_rate)
        self.repeats = _whole("repeats", repeats)
        self.warmup = _whole("warmup", warmup, low=0)
        self.rounds = _whole("rounds", rounds)
        if width_steps is None:
            from speechbrain_prune.costs.latency import default_width_steps

            width_steps = default_width_steps(self.device)
        self.width_steps = tuple(_whole("width_steps", w) for w in width_steps)
        self.fractions = tuple(float(f) for f in fractions)
        if not self.fractions or not all(0 < f < 1 for f in self.fractions):
            raise ValueError(
                f"`fractions` must lie in (0, 1), got {list(fractions)}"
            )

    @property
    def key(self):
        """A file-name-safe name of the conditions (tables are per key):
        the timing conditions and the widths a table measures (its
        ``fractions``, largest first, and ``width_steps``), so that a
        resumed run with other widths measures its own table."""
        fractions = "_".join(f"{f:g}" for f in sorted(self.fractions)[::-1])
        steps = "".join(f"-w{w}" for w in sorted(self.width_steps))
        return f"{self.timing_key}-f{fractions}{steps}"

    @property
    def timing_key(self):
        """The timing conditions alone (device, threads, batch, length,
        dtype): the whole :attr:`key` of caches written before it held the
        table's widths.

        Example
        -------
        >>> LatencySetup(device="cuda", batch_size=16).timing_key
        'cuda-b16-10s-float32'
        """
        threads = f"-{self.threads}threads" if self.threads else ""
        device = str(self.device).replace(":", "")
        return (
            f"{device}{threads}-b{self.batch_size}-{self.seconds:g}s-"
            f"{self.dtype}"
        )

    def describe(self):
        """Readable conditions, for logs and tables."""
        threads = f", {self.threads} threads" if self.threads else ""
        return (
            f"{self.device}{threads}, batch {self.batch_size}, "
            f"{self.seconds:g} s of audio, {self.dtype}"
        )

    @contextlib.contextmanager
    def timing(self):
        """Context of every measurement: threads pinned, denormals flushed
        (RNN gates produce them and slow CPUs down by orders of
        magnitude)."""
        threads = torch.get_num_threads()
        if self.threads and self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        flush = torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            if flush:
                torch.set_flush_denormal(False)

    def batch_from(self, item, collate=None):
        """A batch of ``batch_size`` copies of ``item`` at ``seconds``.

        ``item`` is one example of the training set (a dict): its 1-D float
        tensors (the waveform) are repeated to the length; everything else
        is kept as it is.
        """
        samples = int(round(self.seconds * self.sample_rate))
        example = {}
        for key, value in item.items():
            if (
                isinstance(value, torch.Tensor)
                and value.dim() == 1
                and value.is_floating_point()
                and len(value)
            ):
                reps = -(-samples // len(value))
                value = value.repeat(reps)[:samples]
            example[key] = value
        collate = collate or sb.dataio.batch.PaddedBatch
        return collate([dict(example) for _ in range(self.batch_size)])

    def runner(self, brain, batch):
        """``run(root)``: the recipe's forward through ``root``, timed as set.

        ``root`` must be a copy of ``brain.modules`` on ``self.device``
        (its first run, in training mode, may update its normalisers'
        statistics); ``brain.modules`` and ``brain.device`` are swapped
        meanwhile, and parameter-free modules in the hparams (feature
        extraction) follow the device while it runs.
        """
        stage = STAGES[self.stage]
        dtype = DTYPES[self.dtype]
        device = self.device
        primed = weakref.WeakSet()

        def run(root):
            live, live_device = brain.modules, brain.device
            moved = _parameter_free_modules(brain, device)
            brain.modules, brain.device = root, str(device)
            autocast = (
                torch.autocast(device.type, dtype=dtype)
                if dtype is not torch.float32
                else contextlib.nullcontext()
            )
            try:
                if root not in primed:
                    # Once in training mode: a normaliser that has seen no
                    # data yet has no statistics to run in eval mode.
                    root.train()
                    with torch.no_grad(), torch.random.fork_rng(devices=[]):
                        brain.compute_forward(batch, stage)
                    primed.add(root)
                root.eval()
                with torch.no_grad(), autocast:
                    return brain.compute_forward(batch, stage)
            finally:
                brain.modules, brain.device = live, live_device
                for module, back in moved:
                    module.to(back)

        return run

    def __repr__(self):
        return f"LatencySetup({self.describe()})"


def _parameter_free_modules(brain, device):
    """Moves the hparams' modules without parameters (Fbank, ...) to
    ``device``; returns ``(module, device to move back to)``."""
    moved = []
    hparams = getattr(brain, "hparams", None)
    if hparams is None or torch.device(brain.device).type == device.type:
        return moved
    for value in vars(hparams).values():
        if isinstance(value, torch.nn.Module) and not any(
            True for _ in value.parameters()
        ):
            buffers = list(value.buffers())
            back = buffers[0].device if buffers else torch.device("cpu")
            value.to(device)
            moved.append((value, back))
    return moved


def _whole(key, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{key}` must be an integer >= {low}, got {value!r}")
    return value
