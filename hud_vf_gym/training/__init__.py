"""GRPO training on HUD tasks with TRL: a multi-turn `rollout_func`, reward functions, generation backends, launcher.

```python
from hud_vf_gym.training import HUDGRPOTrainer, HUDRollout, reward_functions, training_dataset

rollout = HUDRollout(config, tasks, turn_tokens=64)
reward_funcs, reward_weights = reward_functions(config.rubric.weights)
args = GRPOConfig(..., reward_weights=reward_weights)  # per_device_train_batch_size: a multiple of num_generations
trainer = HUDGRPOTrainer(model, reward_funcs=reward_funcs, args=args, train_dataset=training_dataset(tasks),
                         rollout_func=rollout)
```

`HUDGRPOTrainer` is TRL's `GRPOTrainer` with a log-probability pass that reads a group's shared prompt once
(`trainer`, `shared_prefix`); TRL's own `GRPOTrainer` works with the same rollout, slower.

`train/grpo.py` wires exactly this from a YAML file. The public names are imported on first use (so
`python -m hud_vf_gym.training.launch` stays quick), and nothing here imports torch or trl until a generation
backend first generates.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "COMPONENT_NAMES": "hud_vf_gym.training.rewards",
    "ChatFormat": "hud_vf_gym.training.sequence",
    "EpisodeResult": "hud_vf_gym.training.rollout",
    "GeneratedTurn": "hud_vf_gym.training.generation",
    "HUDGRPOTrainer": "hud_vf_gym.training.trainer",
    "Generator": "hud_vf_gym.training.generation",
    "HUDRollout": "hud_vf_gym.training.rollout",
    "LaunchPlan": "hud_vf_gym.training.launch",
    "TokenLimits": "hud_vf_gym.training.sequence",
    "TransformersGenerator": "hud_vf_gym.training.generation",
    "VLLMServerGenerator": "hud_vf_gym.training.generation",
    "initial_messages": "hud_vf_gym.training.rollout",
    "load_few_shot": "hud_vf_gym.training.options",
    "plan_launch": "hud_vf_gym.training.launch",
    "resolve_model": "hud_vf_gym.training.options",
    "resolve_report_to": "hud_vf_gym.training.options",
    "reward_functions": "hud_vf_gym.training.rewards",
    "select_generator": "hud_vf_gym.training.generation",
    "training_dataset": "hud_vf_gym.training.rollout",
}

__all__ = [
    "COMPONENT_NAMES",
    "ChatFormat",
    "EpisodeResult",
    "GeneratedTurn",
    "Generator",
    "HUDGRPOTrainer",
    "HUDRollout",
    "LaunchPlan",
    "TokenLimits",
    "TransformersGenerator",
    "VLLMServerGenerator",
    "initial_messages",
    "load_few_shot",
    "plan_launch",
    "resolve_model",
    "resolve_report_to",
    "reward_functions",
    "select_generator",
    "training_dataset",
]

if TYPE_CHECKING:
    from hud_vf_gym.training.generation import (
        GeneratedTurn,
        Generator,
        TransformersGenerator,
        VLLMServerGenerator,
        select_generator,
    )
    from hud_vf_gym.training.launch import LaunchPlan, plan_launch
    from hud_vf_gym.training.options import load_few_shot, resolve_model, resolve_report_to
    from hud_vf_gym.training.rewards import COMPONENT_NAMES, reward_functions
    from hud_vf_gym.training.rollout import EpisodeResult, HUDRollout, initial_messages, training_dataset
    from hud_vf_gym.training.sequence import ChatFormat, TokenLimits
    from hud_vf_gym.training.trainer import HUDGRPOTrainer


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is used."""
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'hud_vf_gym.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, so tab completion shows what lazy loading hides."""
    return __all__
