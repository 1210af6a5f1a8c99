"""``PruningPlan``: every removal, replayable on a freshly built model.

A plan is plain data (YAML or JSON): for each step, the groups that lost
channels with their members, the layer type of every module they slice,
the removed indices and the sizes before and after, or a depth operation
(an RNN layer, a block). Replaying it on a model built from the same
hyperparameters gives identical shapes, so a pruned checkpoint loads with
strict loading. Replay needs no forward pass: the members recorded in the
plan say what to slice.

Replay is all-or-nothing. A plan is checked completely before anything
changes: its content against a schema (keys, types, integer indices in
range, consistent sizes), then every step against the model, replayed
first on a copy of the model that holds shapes only. A plan that does not
fit raises :class:`PlanError` naming the step, the group and the key, and
the model is left untouched; should the surgery itself fail, the model is
restored.

Authors
 * speechbrain-prune team 2026
"""

import copy
import json
import re

import torch
import yaml

from speechbrain_prune.graph.group import ROLES, DependencyGroup
from speechbrain_prune.graph.trace import GroupSet
from speechbrain_prune.handlers import handled_type, handler_for
from speechbrain_prune.surgery.ledger import SliceLedger
from speechbrain_prune.surgery.prune import (
    apply_removals,
    remove_block,
    remove_rnn_layer,
)
from speechbrain_prune.surgery.transaction import all_or_nothing, shape_copy

# libyaml's safe loader where PyYAML has it (the same data, ~10x faster).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
OPS = ("channels", "rnn_layer", "block")
# Keys of each level: required ones, then optional ones.
_TOP = ({"steps"}, {"speechbrain_prune_version"})
_STEP = {
    "channels": ({"op", "groups"}, set()),
    "rnn_layer": ({"op", "module", "layer"}, {"module_type"}),
    "block": ({"op", "module"}, {"module_type"}),
}
_GROUP = (
    {"id", "size", "members", "removed", "size_after"},
    {"kind", "module_types"},
)
_MEMBER = ({"module", "role", "slot"}, {"layout"})
_LAYOUT = ({"size"}, {"copies", "repeat"})


class PlanError(ValueError):
    """A plan is malformed or does not fit the model; nothing was changed."""


class PlanMismatchError(PlanError):
    """The plan does not fit the model it is replayed on."""


def layer_type(module):
    """The layer type a plan records for ``module`` (qualified class name).

    The type that gives the module its handler (a pruned ``LiGRU`` that
    became a ``NonUniformLiGRU`` is still a ``LiGRU``), else its own class.

    Example
    -------
    >>> import speechbrain as sb
    >>> layer_type(sb.nnet.RNN.LSTM(4, input_size=3))
    'speechbrain.nnet.RNN.LSTM'
    """
    t = handled_type(module) or type(module)
    return f"{t.__module__}.{t.__qualname__}"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _Schema:
    """Checks plain plan data; every message says where and which key."""

    def check(self, data):
        if not isinstance(data, dict):
            raise PlanError(
                "Not a pruning plan: expected a mapping with a 'steps' key, "
                f"got {type(data).__name__}"
            )
        self._keys("plan", data, _TOP)
        version = data.get("speechbrain_prune_version")
        if version is not None and not isinstance(version, (str, int, float)):
            raise PlanError(
                "plan: key 'speechbrain_prune_version' must be a version, "
                f"got {version!r}"
            )
        steps = data["steps"]
        if not isinstance(steps, list):
            raise PlanError(
                f"plan: key 'steps' must be a list, got {type(steps).__name__}"
            )
        for i, step in enumerate(steps):
            self.step(i, step)

    def step(self, i, step):
        where = f"plan step {i}"
        if not isinstance(step, dict):
            raise PlanError(f"{where}: must be a mapping, got {step!r}")
        op = step.get("op")
        if op not in OPS:
            raise PlanError(
                f"{where}: key 'op' must be one of {', '.join(OPS)}, got {op!r}"
            )
        where = f"plan step {i} ({op})"
        self._keys(where, step, _STEP[op])
        if op != "channels":
            self._name(where, step, "module")
            if "module_type" in step:
                self._name(where, step, "module_type")
            if op == "rnn_layer":
                self._int(where, step, "layer", 0)
            return
        groups = step["groups"]
        if not isinstance(groups, list) or not groups:
            raise PlanError(
                f"{where}: key 'groups' must be a non-empty list, got "
                f"{groups!r}"
            )
        ids, slots = set(), {}
        for entry in groups:
            gid = self.group(where, entry)
            if gid in ids:
                raise PlanError(f"{where}: key 'id': group {gid!r} repeated")
            ids.add(gid)
            for m in entry["members"]:
                slot = (m["module"], m["slot"])
                if slot in slots:
                    raise PlanError(
                        f"{where}, group {gid!r}: key 'members': "
                        f"{slot[0]} ({slot[1]}) is also a member of group "
                        f"{slots[slot]!r}"
                    )
                slots[slot] = gid

    def group(self, where, entry):
        if not isinstance(entry, dict):
            raise PlanError(f"{where}: a group must be a mapping: {entry!r}")
        gid = entry.get("id")
        if not isinstance(gid, str) or not gid:
            raise PlanError(
                f"{where}: key 'id' of a group must be a name, got {gid!r}"
            )
        where = f"{where}, group {gid!r}"
        self._keys(where, entry, _GROUP)
        size = self._int(where, entry, "size", 1)
        if "kind" in entry:
            self._name(where, entry, "kind")
        members = entry["members"]
        if not isinstance(members, list) or not members:
            raise PlanError(
                f"{where}: key 'members' must be a non-empty list, got "
                f"{members!r}"
            )
        for m in members:
            self.member(where, m, size)
        roles = [m["role"] for m in members]
        if roles.count("producer") != 1 or "consumer" not in roles:
            raise PlanError(
                f"{where}: key 'members' must hold one producer and at least "
                f"one consumer, got roles {roles}"
            )
        modules = {m["module"] for m in members}
        if "module_types" in entry:
            types = entry["module_types"]
            if not isinstance(types, dict) or not all(
                isinstance(v, str) for v in types.values()
            ):
                raise PlanError(
                    f"{where}: key 'module_types' must map module names to "
                    f"layer types, got {types!r}"
                )
            if set(types) != modules:
                raise PlanError(
                    f"{where}: key 'module_types' names modules "
                    f"{sorted(types)}, the members are {sorted(modules)}: "
                    "the group's entry is incomplete"
                )
        removed = entry["removed"]
        if not isinstance(removed, list) or not removed:
            raise PlanError(
                f"{where}: key 'removed' must be a non-empty list of "
                f"channel indices, got {removed!r}"
            )
        for r in removed:
            if not _is_int(r) or not 0 <= r < size:
                raise PlanError(
                    f"{where}: key 'removed' holds {r!r}; indices must be "
                    f"integers in 0..{size - 1}"
                )
        if len(set(removed)) != len(removed):
            raise PlanError(f"{where}: key 'removed' repeats indices")
        after = self._int(where, entry, "size_after", 1)
        if after != size - len(removed):
            raise PlanError(
                f"{where}: key 'size_after' is {after}, but removing "
                f"{len(removed)} of {size} channels leaves "
                f"{size - len(removed)}"
            )
        return gid

    def member(self, where, m, size):
        if not isinstance(m, dict):
            raise PlanError(
                f"{where}: key 'members' holds {m!r}, not a mapping"
            )
        self._keys(f"{where}, a member", m, _MEMBER)
        name = self._name(f"{where}, a member", m, "module")
        where = f"{where}, member {name}"
        if m["role"] not in ROLES:
            raise PlanError(
                f"{where}: key 'role' must be one of {', '.join(ROLES)}, got "
                f"{m['role']!r}"
            )
        self._name(where, m, "slot")
        layout = m.get("layout")
        if layout is None:
            return
        if not isinstance(layout, dict):
            raise PlanError(
                f"{where}: key 'layout' must be a mapping, got {layout!r}"
            )
        self._keys(f"{where}, layout", layout, _LAYOUT)
        if self._int(f"{where}, layout", layout, "size", 1) != size:
            raise PlanError(
                f"{where}: key 'layout' has size {layout['size']}, the "
                f"group has {size} channels"
            )
        for key in ("copies", "repeat"):
            if key in layout:
                self._int(f"{where}, layout", layout, key, 1)

    @staticmethod
    def _keys(where, d, spec):
        required, optional = spec
        missing = sorted(required - set(d))
        if missing:
            raise PlanError(f"{where}: missing key {missing[0]!r}")
        unknown = sorted(set(d) - required - optional, key=str)
        if unknown:
            raise PlanError(
                f"{where}: unknown key {unknown[0]!r} (known keys: "
                f"{', '.join(sorted(required | optional))})"
            )

    @staticmethod
    def _int(where, d, key, low):
        value = d[key]
        if not _is_int(value) or value < low:
            raise PlanError(
                f"{where}: key {key!r} must be an integer >= {low}, got "
                f"{value!r}"
            )
        return value

    @staticmethod
    def _name(where, d, key):
        value = d[key]
        if not isinstance(value, str) or not value:
            raise PlanError(
                f"{where}: key {key!r} must be a non-empty string, got "
                f"{value!r}"
            )
        return value


def validate(data):
    """Raises :class:`PlanError` unless ``data`` is a well-formed plan.

    Arguments
    ---------
    data : object
        What :meth:`PruningPlan.to_dict` gives (or a parsed file).

    Example
    -------
    >>> validate({"steps": [{"op": "rnn_layer", "module": "RNN",
    ...                      "layer": 1.5}]})
    Traceback (most recent call last):
     ...
    speechbrain_prune.plan.PlanError: plan step 0 (rnn_layer): key 'layer' \
must be an integer >= 0, got 1.5
    """
    _Schema().check(data)


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
        """Removes channels from ``root`` and records the step.

        The model is left as it was if the removal fails.
        """
        known = [gid for gid in removals if gid in groups]
        before = {gid: copy.deepcopy(groups[gid]) for gid in known}
        types = {
            gid: {
                name: layer_type(root.get_submodule(name))
                for name in groups[gid].modules()
            }
            for gid in known
        }
        with all_or_nothing(root, ledger):
            ledger = apply_removals(root, groups, removals, ledger)
        step = {"op": "channels", "groups": []}
        for gid, removed in removals.items():
            removed = sorted(int(i) for i in torch.as_tensor(removed).flatten())
            if not removed:
                continue
            group = before[gid].to_dict()
            step["groups"].append(
                {
                    "id": group["id"],
                    "size": group["size"],
                    "kind": group["kind"],
                    "module_types": types[gid],
                    "members": group["members"],
                    "removed": removed,
                    "size_after": group["size"] - len(removed),
                }
            )
        if step["groups"]:
            self.steps.append(step)
        return ledger

    def remove_rnn_layer(self, root, module, layer, ledger=None):
        """Removes an RNN layer from ``root`` and records the step."""
        module_type = layer_type(root.get_submodule(module))
        with all_or_nothing(root, ledger):
            ledger = remove_rnn_layer(root, module, layer, ledger)
        self.steps.append(
            {
                "op": "rnn_layer",
                "module_type": module_type,
                "module": module,
                "layer": int(layer),
            }
        )
        return ledger

    def remove_block(self, root, block):
        """Removes a block from ``root`` and records the step."""
        module_type = layer_type(root.get_submodule(block))
        with all_or_nothing(root):
            remove_block(root, block)
        self.steps.append(
            {"op": "block", "module_type": module_type, "module": block}
        )

    # Replay -------------------------------------------------------------
    def check(self, root):
        """Raises :class:`PlanError` unless the whole plan fits ``root``.

        The plan's content is checked against the schema, then every step
        is checked and replayed on a shape-only copy of ``root``
        (:func:`shape_copy`), so sizes are followed from step to step,
        depth steps included. ``root`` itself is not changed.

        Example
        -------
        >>> import speechbrain as sb
        >>> model = sb.nnet.containers.Sequential(
        ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
        ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
        >>> plan = PruningPlan([{"op": "block", "module": "2"}])
        >>> plan.check(model)
        Traceback (most recent call last):
         ...
        speechbrain_prune.plan.PlanMismatchError: plan step 0 (block): \
the model has no module '2'
        """
        validate(self.to_dict())
        try:
            twin = shape_copy(root)
        except Exception:
            # Not copyable: apply() still checks each step before it runs
            # and restores the model should one fail.
            return
        self._replay(twin, SliceLedger())

    def apply(self, root, ledger=None):
        """Replays every step on ``root`` (a model built like the original).

        All or nothing: the whole plan is checked first (:meth:`check`),
        and should the surgery fail anyway, ``root`` (and ``ledger``) are
        restored before the error propagates.

        Returns
        -------
        SliceLedger
        """
        self.check(root)
        ledger = SliceLedger() if ledger is None else ledger
        with all_or_nothing(root, ledger):
            self._replay(root, ledger)
        return ledger

    def _replay(self, root, ledger):
        for i, step in enumerate(self.steps):
            where = f"plan step {i} ({step['op']})"
            floors = self._check_step(root, where, step)
            try:
                _apply_step(root, step, floors, ledger)
            except PlanError:
                raise
            except (
                AttributeError,
                IndexError,
                KeyError,
                RuntimeError,
                TypeError,
                ValueError,
            ) as e:
                raise PlanMismatchError(f"{where}: {e}") from e
            if step["op"] == "channels":
                self._check_sizes(root, where, step, after=True)

    def _check_step(self, root, where, step):
        """Checks one step against ``root``; returns per-group floors."""
        if step["op"] != "channels":
            module = _module(root, where, step["module"])
            _check_type(where, step["module"], module, step.get("module_type"))
            return {}
        return self._check_sizes(root, where, step, after=False)

    @staticmethod
    def _check_sizes(root, where, step, after):
        floors = {}
        for entry in step["groups"]:
            gwhere = f"{where}, group {entry['id']!r}"
            size = entry["size_after"] if after else entry["size"]
            types = entry.get("module_types", {})
            floor, needs = 1, None
            for d in entry["members"]:
                name = d["module"]
                module = _module(root, gwhere, name)
                handler = handler_for(module)
                if handler is None:
                    raise PlanMismatchError(
                        f"{gwhere}: {name} is a {type(module).__name__}, "
                        "which has no handler"
                    )
                _check_type(gwhere, name, module, types.get(name))
                member = DependencyGroup.from_dict(
                    {"id": entry["id"], "size": size, "members": [d]}
                ).members[0]
                if member.layout is not None:
                    member.layout = member.layout.resized(size)
                _check_slot(gwhere, handler, module, member)
                expected = member.layout.width if member.layout else size
                try:
                    actual = handler.slot_size(module, member)
                except (AttributeError, IndexError, ValueError) as e:
                    raise PlanMismatchError(
                        f"{gwhere}: {name} has no slot {member.slot!r} ({e})"
                    ) from None
                if actual != expected:
                    state = "after the step " if after else ""
                    raise PlanMismatchError(
                        f"{gwhere}: {name} slot {member.slot!r} has {actual} "
                        f"channels {state}where the plan expects {expected}"
                    )
                least = handler.min_channels(module, member)
                if least > floor:
                    floor, needs = least, name
            if not after and entry["size_after"] < floor:
                raise PlanMismatchError(
                    f"{gwhere}: key 'size_after' is {entry['size_after']}, "
                    f"but {needs} needs at least {floor} channels (a norm "
                    "over a single value ignores its input)"
                )
            floors[entry["id"]] = floor
        return floors

    # Serialisation --------------------------------------------------------
    def to_dict(self):
        """Plain data: ``{"version": ..., "steps": [...]}``."""
        return {"speechbrain_prune_version": self.version, "steps": self.steps}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; malformed data raises PlanError.

        Example
        -------
        >>> PruningPlan.from_dict({"steps": [{"op": "block"}]})
        Traceback (most recent call last):
         ...
        speechbrain_prune.plan.PlanError: plan step 0 (block): missing \
key 'module'
        """
        validate(data)
        plan = cls(data["steps"])
        plan.version = data.get("speechbrain_prune_version", plan.version)
        return plan

    def to_yaml(self):
        """The plan as a YAML string."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text):
        """Reads a plan from a YAML (or JSON) string."""
        try:
            data = yaml.load(text, Loader=_SafeLoader)
        except yaml.YAMLError as e:
            raise PlanError(f"The plan is not valid YAML or JSON: {e}") from e
        return cls.from_dict(data)

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
        try:
            with open(path) as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise PlanError(f"{path} is not a text file: {e}") from e
        if str(path).endswith(".json"):
            try:
                data = json.loads(text)
            except ValueError as e:
                raise PlanError(f"{path} is not valid JSON: {e}") from e
            return cls.from_dict(data)
        try:
            return cls.from_yaml(text)
        except PlanError as e:
            raise PlanError(f"{path}: {e}") from e

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


def _module(root, where, name):
    try:
        return root.get_submodule(name)
    except AttributeError:
        raise PlanMismatchError(
            f"{where}: the model has no module {name!r}"
        ) from None


def _check_type(where, name, module, recorded):
    if recorded is not None and layer_type(module) != recorded:
        raise PlanMismatchError(
            f"{where}: {name} is a {layer_type(module)}; the plan was made "
            f"on a {recorded}"
        )


def _check_slot(where, handler, module, member):
    if handler.slots is None:
        return
    patterns = handler.slots.get(member.role, ())
    if not any(re.fullmatch(p, member.slot) for p in patterns):
        raise PlanMismatchError(
            f"{where}: {member.module} ({type(module).__name__}) has no "
            f"{member.role} slot {member.slot!r}"
        )


def _apply_step(root, step, floors, ledger):
    if step["op"] == "channels":
        groups = GroupSet()
        removals = {}
        for entry in step["groups"]:
            group = DependencyGroup.from_dict(entry)
            group.min_size = floors.get(entry["id"], 1)
            groups[entry["id"]] = group
            removals[entry["id"]] = entry["removed"]
        apply_removals(root, groups, removals, ledger)
    elif step["op"] == "rnn_layer":
        remove_rnn_layer(root, step["module"], step["layer"], ledger)
    else:
        remove_block(root, step["module"])
