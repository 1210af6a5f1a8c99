"""Test-session settings for the whole suite (tests and doctests).

The suite's models are tiny: one intra-op thread per process runs them
faster than several, and the recipe runs that tests start as
subprocesses inherit it, so parallel processes do not oversubscribe the
cores. Latency measurements set their own thread count
(:class:`speechbrain_prune.LatencySetup`). Set ``OMP_NUM_THREADS`` to
override.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
