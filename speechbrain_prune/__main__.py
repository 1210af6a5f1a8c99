"""``python -m speechbrain_prune``: the same as ``speechbrain-prune``."""

import sys

from speechbrain_prune.cli import main

sys.exit(main())
