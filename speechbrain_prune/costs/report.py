"""Per-layer cost table: parameters, MACs and share of the total.

Authors
 * speechbrain-prune team 2026
"""

from speechbrain_prune.costs.macs import macs_by_module
from speechbrain_prune.graph.trace import hook_targets


def cost_table(model, input_shape=None, run=None):
    """Rows ``(layer, type, params, macs)`` for every layer with a cost.

    Layers are the modules the pruning engine handles (a whole LSTM, a
    ``Conv2d`` wrapper, ...); the MACs of their inner torch layers are
    summed into them.

    Example
    -------
    >>> import speechbrain as sb
    >>> net = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=4, input_size=3),
    ...     sb.nnet.RNN.LSTM(hidden_size=2, input_size=4))
    >>> for row in cost_table(net, (1, 10, 3)):
    ...     print(row)
    ('0', 'Linear', 16, 120)
    ('1', 'LSTM', 64, 480)
    """
    counts = macs_by_module(model, input_shape, run)
    rows = []
    for name, module, _ in hook_targets(model):
        params = sum(p.numel() for p in module.parameters())
        macs = sum(
            v
            for k, v in counts.items()
            if k == name or k.startswith(name + ".") or not name
        )
        if params or macs:
            rows.append((name, type(module).__name__, params, macs))
    return rows


def format_cost_table(rows, title=None):
    """A Markdown table of :func:`cost_table` rows with shares and totals.

    Example
    -------
    >>> print(format_cost_table([("a", "Linear", 10, 3000),
    ...                          ("b", "LSTM", 30, 1000)]))
    | layer | type | params | MACs | share of MACs |
    |---|---|---:|---:|---:|
    | a | Linear | 10 | 3,000 | 75.0 % |
    | b | LSTM | 30 | 1,000 | 25.0 % |
    | **total** | | 40 | 4,000 | 100 % |
    """
    total_p = sum(r[2] for r in rows)
    total_m = sum(r[3] for r in rows)
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| layer | type | params | MACs | share of MACs |",
        "|---|---|---:|---:|---:|",
    ]
    for name, kind, params, macs in rows:
        share = 100.0 * macs / total_m if total_m else 0.0
        lines.append(
            f"| {name} | {kind} | {params:,} | {macs:,} | {share:.1f} % |"
        )
    lines.append(f"| **total** | | {total_p:,} | {total_m:,} | 100 % |")
    return "\n".join(lines)


__all__ = ["cost_table", "format_cost_table"]
