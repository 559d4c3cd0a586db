"""Executing bundle actions: preconditions, inputs, the container, outputs, cancel, recovery.

- :mod:`.planning`: the checks made while the client waits, and the resolved inputs;
- :mod:`.contract`: the CNAB runtime contract (what the container gets);
- :mod:`.runner`: background execution, the concurrency limit, cancel, completion, recovery;
- :mod:`.outputs`: the outputs read back from the container, typed and checked;
- :mod:`.service`: :class:`ActionService`, the calls, over the planner and the runner.
"""

from __future__ import annotations

from porter_bundle.service.actions.outputs import collect_outputs
from porter_bundle.service.actions.planning import ActionPreview, ActionRequest
from porter_bundle.service.actions.service import ActionService
from porter_bundle.service.actions.settings import ActionSettings, LeaseSettings

__all__ = [
    "ActionPreview",
    "ActionRequest",
    "ActionService",
    "ActionSettings",
    "LeaseSettings",
    "collect_outputs",
]
