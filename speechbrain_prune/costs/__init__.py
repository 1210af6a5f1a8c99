"""Cost of a model: multiply-accumulates, parameters, per layer and group."""

from speechbrain_prune.costs.macs import (  # noqa: F401
    count_cost,
    count_macs,
    count_params,
    group_costs,
    macs_by_module,
    register_mac_counter,
)
