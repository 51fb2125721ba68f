"""OpenPipe ART on HUD environments (seed 000): HUD episodes as ART trajectories, RULER, GRPO training.

```python
from hud_vf_gym.integrations.art import train_hud_with_art

await train_hud_with_art(environment="browser", base_model="Qwen/Qwen2.5-7B-Instruct", num_training_scenarios=24)
```

- `ARTTrainingAgent`: `await agent.run_with_trajectory(task)` plays one task through the project's harness (the
  same parser, action mapper, MCP sessions and warm pool as `HUDGym`, `hud-vf-gym eval` and the TRL trainer) with
  any OpenAI-compatible client and returns an `art.Trajectory`; `rollout_group(task, n)` a `TrajectoryGroup`.
- `train_hud_with_art(...)` / `python -m hud_vf_gym.integrations.art`: gather groups, optionally score them with
  RULER (`Judge`, `score_group`), `backend.train(...)`, `model.log(...)`; backends by name: `local`, `serverless`,
  `ruler-only`.
- `generate_scenarios_from_hud(mcp_config, n, ...)`: tasks for a server without a taskset, from its tools.
- `results_to_groups(folder)`, `write_groups`, `read_groups`: `hud-vf-gym eval` results as ART groups (JSONL);
  also `hud-vf-gym export-art RESULTS`.

Needs `pip install 'hud-vf-gym[art]'` (openpipe-art 0.5.23+, Python 3.12+). Importing this package imports
neither ART nor anything heavy; `art.local` (torch) is imported only for the `local` backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "ARTOptions",
    "ARTTrainingAgent",
    "Judge",
    "Sampling",
    "generate_scenarios_from_hud",
    "read_groups",
    "results_to_groups",
    "score_group",
    "train_hud_with_art",
    "write_groups",
]

_LAZY_NAMES: dict[str, str] = {
    "ARTOptions": "hud_vf_gym.integrations.art.options",
    "ARTTrainingAgent": "hud_vf_gym.integrations.art.agent",
    "Judge": "hud_vf_gym.integrations.art.ruler",
    "Sampling": "hud_vf_gym.integrations.art.agent",
    "generate_scenarios_from_hud": "hud_vf_gym.integrations.art.scenarios",
    "read_groups": "hud_vf_gym.integrations.art.export",
    "results_to_groups": "hud_vf_gym.integrations.art.export",
    "score_group": "hud_vf_gym.integrations.art.ruler",
    "train_hud_with_art": "hud_vf_gym.integrations.art.training",
    "write_groups": "hud_vf_gym.integrations.art.export",
}

if TYPE_CHECKING:
    from hud_vf_gym.integrations.art.agent import ARTTrainingAgent, Sampling
    from hud_vf_gym.integrations.art.export import read_groups, results_to_groups, write_groups
    from hud_vf_gym.integrations.art.options import ARTOptions
    from hud_vf_gym.integrations.art.ruler import Judge, score_group
    from hud_vf_gym.integrations.art.scenarios import generate_scenarios_from_hud
    from hud_vf_gym.integrations.art.training import train_hud_with_art


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is used."""
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'hud_vf_gym.integrations.art' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, so tab completion shows what lazy loading hides."""
    return __all__
