"""Dependency groups: the unit of importance scoring and of removal.

A *group* is one space of channels (conv channels, RNN hidden units of one
layer, dense neurons). Every parameter slice that belongs to a channel is a
*member* of the group: the producer's output rows, per-channel norms it
passes through, and the input columns of every consumer. Removing channel
``i`` of a group removes it from all members at once.

Authors
 * speechbrain-prune team 2026
"""

from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch

PRODUCER = "producer"
THROUGH = "through"
CONSUMER = "consumer"
ROLES = (PRODUCER, THROUGH, CONSUMER)


@dataclass(frozen=True)
class Layout:
    """Maps the positions of a tensor's last axis to group channels.

    SpeechBrain flattens ``(batch, time, freq, channels)`` to
    ``(batch, time, freq * channels)`` with index ``f * C + c``, and a
    bidirectional RNN concatenates both directions (``j`` and ``H + j``).
    Position ``p`` of a layout therefore holds channel
    ``(p mod (size * copies)) mod size``.

    Arguments
    ---------
    size : int
        Number of channels of the group.
    copies : int
        Consecutive copies of the channel range (2 for a bidirectional RNN).
    repeat : int
        Times the whole block is tiled (the frequency bins of a flatten).

    Example
    -------
    >>> Layout(size=3, copies=2).channels().tolist()
    [0, 1, 2, 0, 1, 2]
    >>> Layout(size=2, repeat=3).width
    6
    """

    size: int
    copies: int = 1
    repeat: int = 1

    @property
    def width(self):
        """Number of positions on the tensor axis."""
        return self.size * self.copies * self.repeat

    def channels(self):
        """The group channel of every position, as a LongTensor."""
        return torch.arange(self.size).repeat(self.copies * self.repeat)

    def positions(self, keep):
        """Positions that carry the channels in ``keep`` (sorted).

        Arguments
        ---------
        keep : torch.Tensor
            Group channels to select.

        Returns
        -------
        torch.Tensor
            Sorted positions on the tensor axis.

        Example
        -------
        >>> Layout(3, repeat=2).positions(torch.tensor([0, 2])).tolist()
        [0, 2, 3, 5]
        """
        mask = torch.zeros(self.size, dtype=torch.bool)
        mask[keep] = True
        return torch.nonzero(mask[self.channels()]).flatten()

    def index_matrix(self):
        """``(size, copies * repeat)`` positions of each channel.

        Example
        -------
        >>> Layout(2, copies=2).index_matrix().tolist()
        [[0, 2], [1, 3]]
        """
        n = self.copies * self.repeat
        return torch.arange(self.size)[:, None] + self.size * torch.arange(n)

    def flattened(self, repeat):
        """The layout after a flatten with ``repeat`` leading bins."""
        return Layout(self.size, self.copies, self.repeat * repeat)

    def resized(self, size):
        """The same layout for a group that now has ``size`` channels."""
        return Layout(size, self.copies, self.repeat)


@dataclass
class Member:
    """One slice of one module that belongs to a group.

    Arguments
    ---------
    module : str
        Qualified module name in the traced root (``enc.CNN.block_0.conv_1``).
    role : str
        ``producer`` (output rows), ``through`` (per-channel parameters on
        the way) or ``consumer`` (input columns).
    slot : str
        What the handler of that module slices, e.g. ``out``, ``in``,
        ``hidden.1`` or ``input.0``.
    layout : Layout, optional
        How the group's channels sit on the sliced axis (consumers).
    """

    module: str
    role: str
    slot: str
    layout: Optional[Layout] = None

    def to_dict(self):
        """Plain-data form (for plans)."""
        d = asdict(self)
        if self.layout is None:
            d.pop("layout")
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        layout = d.get("layout")
        return cls(
            d["module"],
            d["role"],
            d["slot"],
            Layout(**layout) if layout is not None else None,
        )


@dataclass
class DependencyGroup:
    """Channels that must be removed together, with all their members.

    Arguments
    ---------
    id : str
        Stable name: the producer module, plus the layer for RNNs.
    size : int
        Current number of channels.
    kind : str
        ``conv``, ``rnn``, ``dense``, ... (for reports and per-kind options).
    members : list of Member
        Every slice coupled to the channels.
    prunable : bool
        False when some use of the channels could not be traced.
    reasons : list of str
        Why the group is not prunable.
    min_size : int
        Fewest channels the group may keep (a layer may need more than 1).

    Example
    -------
    >>> g = DependencyGroup("enc.DNN.block_0.linear", 8, "dense")
    >>> g.add(Member("enc.DNN.block_0.linear", PRODUCER, "out"))
    >>> g.modules()
    ['enc.DNN.block_0.linear']
    """

    id: str
    size: int
    kind: str = "dense"
    members: List[Member] = field(default_factory=list)
    prunable: bool = True
    reasons: List[str] = field(default_factory=list)
    min_size: int = 1

    def add(self, member):
        """Adds a member unless the same slice is already there."""
        if member.role not in ROLES:
            raise ValueError(f"Unknown member role {member.role!r}")
        for m in self.members:
            if (m.module, m.slot) == (member.module, member.slot):
                if m.layout != member.layout:
                    raise RuntimeError(
                        f"Group {self.id}: {member.module} ({member.slot}) "
                        f"is reached with two layouts {m.layout} and "
                        f"{member.layout}."
                    )
                return
        self.members.append(member)

    def block(self, reason):
        """Marks the group as not prunable, keeping why."""
        self.prunable = False
        if reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def consumers(self):
        """Members that read the channels."""
        return [m for m in self.members if m.role == CONSUMER]

    def modules(self):
        """Names of the modules touched by this group, in order."""
        return list(dict.fromkeys(m.module for m in self.members))

    def to_dict(self):
        """Plain-data form (for plans)."""
        return {
            "id": self.id,
            "size": self.size,
            "kind": self.kind,
            "members": [m.to_dict() for m in self.members],
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls(
            d["id"],
            d["size"],
            d.get("kind", "dense"),
            [Member.from_dict(m) for m in d["members"]],
        )
