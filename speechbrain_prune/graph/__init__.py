"""Model -> dependency groups: the coupled channels that are pruned together."""

from speechbrain_prune.graph.group import (  # noqa: F401
    DependencyGroup,
    Layout,
    Member,
)
from speechbrain_prune.graph.trace import (  # noqa: F401
    GroupSet,
    discover_groups,
)
