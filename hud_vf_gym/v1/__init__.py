"""The verifiers v1 adapter: HUD tasks as a v1 taskset (`vf-eval hud_vf_gym` under verifiers 0.4).

`taskset.py` holds the v1 classes (`HUDTaskset`, `HUDTask`, the `HUDActions` toolset); `server.py` the per-process
MCP endpoint that serves each rollout's mapped actions. Importing this package imports `verifiers.v1`.
"""

from __future__ import annotations

from hud_vf_gym.v1.taskset import HUDTaskset

__all__ = ["HUDTaskset"]
