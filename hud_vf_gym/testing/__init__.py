"""Test and benchmark helpers: a real OpenAI-compatible chat server on 127.0.0.1 and scripted policies to run it.

```python
from hud_vf_gym.testing import Play2048Policy, ScriptedChatServer

with ScriptedChatServer(Play2048Policy(max_moves=10)) as server:
    client = AsyncOpenAI(base_url=server.base_url, api_key="x")
```

Only the standard library is imported here, so a benchmark can start a server without loading verifiers.
"""

from __future__ import annotations

from hud_vf_gym.testing.chat_server import (
    DEFAULT_MODEL_NAME,
    Policy,
    RecordedRequest,
    ScriptedChatServer,
    ToolCallReply,
    message_text,
)
from hud_vf_gym.testing.policies import (
    DIRECTIONS,
    POLICIES,
    FixedRepliesPolicy,
    NonsensePolicy,
    Play2048Policy,
    make_policy,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DIRECTIONS",
    "FixedRepliesPolicy",
    "NonsensePolicy",
    "POLICIES",
    "Play2048Policy",
    "Policy",
    "RecordedRequest",
    "ScriptedChatServer",
    "ToolCallReply",
    "make_policy",
    "message_text",
]
