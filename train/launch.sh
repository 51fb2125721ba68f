#!/usr/bin/env bash
# GRPO on several GPUs: a vLLM server on the first GPU(s), `accelerate launch train/grpo.py` on the rest.
#
#   train/launch.sh --num-gpus 4 --model Qwen/Qwen2.5-1.5B-Instruct [--vllm-gpus 1] [--accelerate zero2|zero3|single_gpu]
#                   [--config configs/train/2048-gpu.yaml] [--port 8000] [-- extra train/grpo.py arguments]
#   several machines (the same command on each; SkyPilot's variables give the rank and the head's address):
#   train/launch.sh --num-gpus 8 --num-machines 2 --machine-rank "$SKYPILOT_NODE_RANK" \
#                   --main-process-ip "$(echo "$SKYPILOT_NODE_IPS" | head -n1)" --model ... -- ...
#
# The command lines come from `python -m hud_vf_gym.training.launch` (the same arguments; tested without a GPU).
# In order:
#   1. start the vLLM server in its own process group, bound to 127.0.0.1 (the head of several machines binds every
#      interface; the other machines start no server);
#   2. wait for its /health to answer 200, at most HEALTH_TIMEOUT_S seconds, failing at once if the server dies;
#   3. run the trainer in its own process group and wait for it;
#   4. on exit, Ctrl-C or SIGTERM: stop the trainer's group, then the server's (SIGTERM, STOP_GRACE_S, SIGKILL).
# The exit status is the trainer's (130/143 when interrupted).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
HEALTH_TIMEOUT_S="${HEALTH_TIMEOUT_S:-900}"  # loading a large model and compiling CUDA graphs takes minutes
HEALTH_POLL_S="${HEALTH_POLL_S:-2}"          # seconds between health checks
STOP_GRACE_S="${STOP_GRACE_S:-20}"           # after SIGTERM, before SIGKILL: vLLM frees GPU memory on the way out

SERVER_ENV=() SERVER_CMD=() TRAINER_ENV=() TRAINER_CMD=() HEALTH_URL=""
plan="$("$PYTHON" -m hud_vf_gym.training.launch "$@")"
eval "$plan"  # the plan is bash array assignments, every word quoted by shlex.quote

server_pid=""
trainer_pid=""

# Stop a whole process group: SIGTERM, wait up to STOP_GRACE_S, then SIGKILL.
stop_group() {
    local pid="$1"
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    local waited=0
    while kill -0 -- "-$pid" 2>/dev/null; do
        if [ "$waited" -ge $((STOP_GRACE_S * 10)) ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$trainer_pid" ]; then stop_group "$trainer_pid"; fi
    if [ -n "$server_pid" ]; then stop_group "$server_pid"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The server, in a session (and process group) of its own so that stopping it stops its workers too. A machine
#    other than the head of several has no server command: it uses the head's server.
if [ "${#SERVER_CMD[@]}" -gt 0 ]; then
    echo "launch: starting vLLM: ${SERVER_ENV[*]} ${SERVER_CMD[*]}" >&2
    setsid env "${SERVER_ENV[@]}" "${SERVER_CMD[@]}" &
    server_pid=$!
else
    echo "launch: using the head machine's vLLM server at $HEALTH_URL" >&2
fi

# 2. Wait for /health (bounded; a dead server fails at once).
deadline=$((SECONDS + HEALTH_TIMEOUT_S))
until "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$HEALTH_URL" 2>/dev/null; do
    if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then
        echo "launch: the vLLM server exited before it answered $HEALTH_URL; see its output above" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "launch: the vLLM server did not answer $HEALTH_URL within ${HEALTH_TIMEOUT_S}s; raise HEALTH_TIMEOUT_S if the model is large" >&2
        exit 1
    fi
    sleep "$HEALTH_POLL_S"
done
echo "launch: vLLM is ready at $HEALTH_URL" >&2

# 3. The trainer, in its own process group as well (accelerate starts one process per GPU).
echo "launch: starting training: ${TRAINER_ENV[*]} ${TRAINER_CMD[*]}" >&2
setsid env "${TRAINER_ENV[@]}" "${TRAINER_CMD[@]}" &
trainer_pid=$!
status=0
wait "$trainer_pid" || status=$?
exit "$status"  # the EXIT trap stops whatever the trainer left in its group, then the server
