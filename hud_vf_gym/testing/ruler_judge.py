"""A scripted RULER judge for `ScriptedChatServer`: scores each trajectory it is shown by what its actions did.

ART's RULER sends a group's trajectories to the judge as `<trajectory id="N">[messages as JSON]</trajectory>` blocks
and expects `{"scores": [{"trajectory_id", "explanation", "score"}]}` back. `RulerJudgePolicy` reads the blocks and
scores trajectory N by the share of its observations that report an executed action (`<result>`), rather than an
error, a parse problem or an unknown action: a deterministic judge for offline tests and demos, derived from the
trajectories it is given (it knows nothing of the task's own reward).

```
python -m hud_vf_gym.testing.ruler_judge          # prints: serving ruler-judge at http://127.0.0.1:PORT/v1
```
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from typing import Any

from hud_vf_gym.testing.chat_server import ScriptedChatServer, message_text

__all__ = ["JUDGE_MODEL_NAME", "RulerJudgePolicy", "main"]

JUDGE_MODEL_NAME = "ruler-judge"
_TRAJECTORY = re.compile(r'<trajectory id="(?P<id>[^"]+)">\s*(?P<body>.*?)\s*</trajectory>', re.DOTALL)
_EXECUTED = "<result>"  # how the harness shows the output of an action that ran


class RulerJudgePolicy:
    """Answers a RULER request with one score per trajectory: executed observations / all observations."""

    def __repr__(self) -> str:
        """Name the policy in the server's error messages."""
        return "RulerJudgePolicy()"

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        """Score every `<trajectory>` block of the last user message; raise when there is none."""
        text = message_text(messages[-1]) if messages else ""
        blocks = list(_TRAJECTORY.finditer(text))
        if not blocks:
            raise ValueError("no <trajectory id=...> block in the request; this judge only answers RULER")
        return json.dumps({"scores": [_score(block["id"], block["body"]) for block in blocks]})


def _score(trajectory_id: str, body: str) -> dict[str, Any]:
    try:
        messages = json.loads(body)
    except json.JSONDecodeError:
        messages = []
    observations = [
        message_text(message) for message in messages if isinstance(message, dict) and message.get("role") == "user"
    ]
    executed = sum(observation.lstrip().startswith(_EXECUTED) for observation in observations)
    total = len(observations)
    score = executed / total if total else 0.0
    explanation = f"{executed} of {total} actions ran" if total else "no action was taken"
    return {"trajectory_id": trajectory_id, "explanation": explanation, "score": round(score, 4)}


def main() -> int:
    """Serve the judge on 127.0.0.1 until SIGINT or SIGTERM; the first stdout line is the base URL."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ScriptedChatServer(RulerJudgePolicy(), model_name=JUDGE_MODEL_NAME) as server:
        sys.stdout.write(f"serving {JUDGE_MODEL_NAME} at {server.base_url}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
