"""The benches' scripted model in a process of its own, as a real model server is: no GIL shared with the harness.

    cd bench && python -m lib.policy_server xml     # Play2048Policy's XML replies (HUDGym and the bare floors)
    cd bench && python -m lib.policy_server native  # the same moves as native tool calls (verifiers' MCPEnv)

It prints its port on the first line of stdout and serves `ScriptedChatServer` on 127.0.0.1 until its stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lib.common import MOVES_PER_ROLLOUT

BENCH_DIR = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 5.0  # the server stops within its shutdown poll once stdin closes; this only bounds a hang


@contextmanager
def policy_process(mode: str) -> Iterator[str]:
    """Start the policy server in a child process; yield its OpenAI base URL; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lib.policy_server", mode],
        cwd=BENCH_DIR,  # so `lib` imports as it does for the entry scripts
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None  # set by stdout=PIPE
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    """Serve the policy named on the command line until stdin closes."""
    from hud_vf_gym.testing import Play2048Policy, Policy, ScriptedChatServer

    from lib.peer_mcpenv import NativeTools2048Policy

    if sys.argv[1:] not in (["xml"], ["native"]):
        sys.exit("usage: python -m lib.policy_server xml|native (from bench/)")
    policy: Policy = Play2048Policy(max_moves=MOVES_PER_ROLLOUT, look_ahead=True)
    if sys.argv[1] == "native":
        policy = NativeTools2048Policy(policy)  # type: ignore[arg-type]
    with ScriptedChatServer(policy, max_recorded_requests=0) as server:
        print(server.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
