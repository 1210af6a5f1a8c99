"""``PruningPlan``: every removal, replayable on a freshly built model.

A plan is plain data (YAML or JSON): for each step, the groups that lost
channels with their members, the removed indices and the sizes before and
after, or a depth operation (an RNN layer, a block). Replaying it on a model
built from the same hyperparameters gives identical shapes, so a pruned
checkpoint loads with strict loading. Replay needs no forward pass: the
members recorded in the plan say what to slice, and each is checked against
the model first, so a plan that does not fit is refused before anything
changes, naming the first mismatch.

Authors
 * speechbrain-prune team 2026
"""

import copy
import json

import torch
import yaml

from speechbrain_prune.graph.group import DependencyGroup
from speechbrain_prune.graph.trace import GroupSet
from speechbrain_prune.handlers import handler_for
from speechbrain_prune.surgery.ledger import SliceLedger
from speechbrain_prune.surgery.prune import (
    apply_removals,
    remove_block,
    remove_rnn_layer,
)


class PlanMismatchError(ValueError):
    """The plan does not fit the model it is replayed on."""


class PruningPlan:
    """An ordered list of removal steps.

    Arguments
    ---------
    steps : list of dict, optional
        Steps as produced by the ``record_*`` methods.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> def build():
    ...     torch.manual_seed(0)
    ...     return sb.nnet.containers.Sequential(
    ...         sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...         sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> model, plan = build(), PruningPlan()
    >>> groups = discover_groups(model, torch.rand(1, 4, 3))
    >>> _ = plan.prune(model, groups, {"0": [0, 5]})
    >>> fresh = build()
    >>> _ = PruningPlan.from_yaml(plan.to_yaml()).apply(fresh)
    >>> fresh.load_state_dict(model.state_dict())
    <All keys matched successfully>
    """

    def __init__(self, steps=None):
        from speechbrain_prune import __version__

        self.version = __version__
        self.steps = list(steps or [])

    # Recording (and applying) ------------------------------------------
    def prune(self, root, groups, removals, ledger=None):
        """Removes channels from ``root`` and records the step."""
        before = {gid: copy.deepcopy(groups[gid]) for gid in removals}
        ledger = apply_removals(root, groups, removals, ledger)
        step = {"op": "channels", "groups": []}
        for gid, removed in removals.items():
            removed = sorted(int(i) for i in torch.as_tensor(removed).flatten())
            if not removed:
                continue
            entry = before[gid].to_dict()
            entry["removed"] = removed
            entry["size_after"] = entry["size"] - len(removed)
            step["groups"].append(entry)
        if step["groups"]:
            self.steps.append(step)
        return ledger

    def remove_rnn_layer(self, root, module, layer, ledger=None):
        """Removes an RNN layer from ``root`` and records the step."""
        ledger = remove_rnn_layer(root, module, layer, ledger)
        self.steps.append({"op": "rnn_layer", "module": module, "layer": layer})
        return ledger

    def remove_block(self, root, block):
        """Removes a block from ``root`` and records the step."""
        remove_block(root, block)
        self.steps.append({"op": "block", "module": block})

    # Replay -------------------------------------------------------------
    def check(self, root, step_index=0):
        """Raises :class:`PlanMismatchError` if step ``step_index`` misfits."""
        step = self.steps[step_index]
        where = f"plan step {step_index} ({step['op']})"
        if step["op"] != "channels":
            try:
                root.get_submodule(step["module"])
            except AttributeError:
                raise PlanMismatchError(
                    f"{where}: the model has no module {step['module']!r}"
                ) from None
            return
        for entry in step["groups"]:
            group = DependencyGroup.from_dict(entry)
            for m in group.members:
                try:
                    module = root.get_submodule(m.module)
                except AttributeError:
                    raise PlanMismatchError(
                        f"{where}, group {group.id}: the model has no module "
                        f"{m.module!r}"
                    ) from None
                handler = handler_for(module)
                if handler is None:
                    raise PlanMismatchError(
                        f"{where}, group {group.id}: {m.module} is a "
                        f"{type(module).__name__}, which has no handler"
                    )
                expected = (
                    m.layout.width if m.layout is not None else group.size
                )
                try:
                    actual = handler.slot_size(module, m)
                except (AttributeError, IndexError, ValueError) as e:
                    raise PlanMismatchError(
                        f"{where}, group {group.id}: {m.module} has no slot "
                        f"{m.slot!r} ({e})"
                    ) from None
                if actual != expected:
                    raise PlanMismatchError(
                        f"{where}, group {group.id}: {m.module} slot "
                        f"{m.slot!r} has {actual} channels, the plan "
                        f"expects {expected}"
                    )

    def apply(self, root, ledger=None):
        """Replays every step on ``root`` (a model built like the original).

        Each step is checked before it changes anything.

        Returns
        -------
        SliceLedger
        """
        ledger = SliceLedger() if ledger is None else ledger
        for i, step in enumerate(self.steps):
            self.check(root, i)
            if step["op"] == "channels":
                groups = GroupSet()
                removals = {}
                for entry in step["groups"]:
                    groups[entry["id"]] = DependencyGroup.from_dict(entry)
                    removals[entry["id"]] = entry["removed"]
                apply_removals(root, groups, removals, ledger)
            elif step["op"] == "rnn_layer":
                remove_rnn_layer(root, step["module"], step["layer"], ledger)
            elif step["op"] == "block":
                remove_block(root, step["module"])
            else:
                raise PlanMismatchError(f"Unknown plan step {step['op']!r}")
        return ledger

    # Serialisation --------------------------------------------------------
    def to_dict(self):
        """Plain data: ``{"version": ..., "steps": [...]}``."""
        return {"speechbrain_prune_version": self.version, "steps": self.steps}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "steps" not in data:
            raise ValueError("Not a pruning plan: expected a 'steps' key")
        plan = cls(data["steps"])
        plan.version = data.get("speechbrain_prune_version", plan.version)
        return plan

    def to_yaml(self):
        """The plan as a YAML string."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text):
        """Reads a plan from a YAML (or JSON) string."""
        return cls.from_dict(yaml.safe_load(text))

    def save(self, path):
        """Writes YAML, or JSON when ``path`` ends with ``.json``."""
        with open(path, "w") as f:
            if str(path).endswith(".json"):
                json.dump(self.to_dict(), f, indent=1)
            else:
                f.write(self.to_yaml())

    @classmethod
    def load(cls, path):
        """Reads a plan written by :meth:`save`."""
        with open(path) as f:
            return cls.from_yaml(f.read())

    def __len__(self):
        return len(self.steps)

    def summary(self):
        """One line per step."""
        lines = []
        for i, step in enumerate(self.steps):
            if step["op"] == "channels":
                parts = [
                    f"{g['id']} {g['size']}->{g['size_after']}"
                    for g in step["groups"]
                ]
                lines.append(f"{i}: channels " + ", ".join(parts))
            else:
                lines.append(
                    f"{i}: remove {step['op']} {step['module']}"
                    + (f"[{step['layer']}]" if "layer" in step else "")
                )
        return "\n".join(lines)
