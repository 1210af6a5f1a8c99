"""Physical surgery: slice tensors, rebuild modules, record what moved."""

from speechbrain_prune.surgery.ledger import (  # noqa: F401
    SliceLedger,
    replace_tensor,
)
from speechbrain_prune.surgery.prune import (  # noqa: F401
    apply_removals,
    remove_block,
    remove_rnn_layer,
)
from speechbrain_prune.surgery.transaction import (  # noqa: F401
    ModuleSnapshot,
    all_or_nothing,
    shape_copy,
)
