"""`hud-vf-gym train` and its programmatic entry, for programs that drive training (an HTTP service).

```python
from hud_vf_gym.cli.train import TrainOptions, execute, plan, start

the_plan = plan(TrainOptions(max_steps=1))      # finds the inputs, reads .env, decides everything; starts nothing
print(the_plan.describe())                      # the text `hud-vf-gym train --plan` prints
the_plan.blockers                               # what must be fixed first, each with its command (empty: ready)
the_plan.argv                                   # python -m hud_vf_gym.cli train --yes ... with every input found
process = start(the_plan, Path("train.log"))    # that command in a new session, stdout+stderr into the log
os.killpg(process.pid, signal.SIGINT)           # stop it as Ctrl-C would (a cloud run cancels and tears down)
status = execute(the_plan)                      # or run it here, to the end
```

`plan` raises `ConfigError` listing every missing input with the command that creates it. `the_plan.sky_task`
(`to_yaml()`) is the SkyPilot task of a cloud run and `the_plan.sky` its command sequence; `the_plan.step` is the
command of a local run. Only `hud_vf_gym.cli.train.command` is imported by the CLI's parser; the rest loads on use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hud_vf_gym.cli.train.options import TrainOptions
    from hud_vf_gym.cli.train.planning import TrainPlan, plan
    from hud_vf_gym.cli.train.running import execute, start

__all__ = ["TrainOptions", "TrainPlan", "execute", "plan", "start"]

_LAZY = {
    "TrainOptions": "hud_vf_gym.cli.train.options",
    "TrainPlan": "hud_vf_gym.cli.train.planning",
    "plan": "hud_vf_gym.cli.train.planning",
    "execute": "hud_vf_gym.cli.train.running",
    "start": "hud_vf_gym.cli.train.running",
}


def __getattr__(name: str) -> Any:
    """Import the public names on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
