"""The training service's speed: requests/s of GET /health and GET /jobs/{id}, and event-stream latency.

The service runs as its own process (uvicorn on 127.0.0.1, this script started with `--serve`), with one job whose
command writes a Trainer-style step-metrics line every `--interval` seconds carrying the time it was written. The
client (this process) measures:

1. requests/s of `GET /health` and `GET /jobs/{id}` (the job has logged a few hundred steps by then, so its status
   includes a real reward curve), with 1 and 8 requests in flight over keep-alive connections;
2. event-stream latency: the time from a metric line being written to the job's log until its server-sent event
   reaches a client following `GET /jobs/{id}/events` (median, p90, max over `--events` steps). The service reads
   running jobs' logs every `poll_interval_s` (50 ms), which bounds the median from below at about half of that.

Run: `python bench/service.py [--seconds 5] [--events 50] [--interval 0.1] [--json PATH]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METRIC_WRITER = """
import sys, time
interval, steps = float(sys.argv[1]), int(sys.argv[2])
for step in range(steps):
    print({"loss": "0.01", "reward": f"{(step % 20) / 20:.4g}", "written_at": repr(time.time())}, flush=True)
    time.sleep(interval)
"""
WARM_STEPS = 200  # metric lines written before timing starts, so GET /jobs/{id} returns a real reward curve


def serve(port: int, state_dir: Path, interval: float, steps: int) -> None:
    """The service process: `hud-vf-gym serve`'s app, its training jobs replaced by METRIC_WRITER."""
    import uvicorn

    from hud_vf_gym.service.app import create_app
    from hud_vf_gym.service.settings import ServiceSettings

    script = state_dir / "metric_writer.py"
    script.write_text(METRIC_WRITER, encoding="utf-8")

    def build(job: Any, paths: Any, resume: bool) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, str(script), str(interval), str(steps)], dict(os.environ)

    app = create_app(ServiceSettings(state_dir=state_dir, port=port, work_dir=state_dir), build_command=build)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def requests_per_second(url: str, seconds: float, in_flight: int) -> float:
    """Completed GETs per second with `in_flight` requests outstanding (one keep-alive connection each)."""
    import httpx2

    async with httpx2.AsyncClient(timeout=30, limits=httpx2.Limits(max_connections=in_flight)) as client:
        await client.get(url)  # connect and warm up
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                response = await client.get(url)
                response.raise_for_status()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done / (time.perf_counter() - started)


def event_latencies(base_url: str, job_id: str, count: int) -> list[float]:
    """Seconds from each metric line's `written_at` to its event's arrival, for the next `count` metric events."""
    import httpx2

    latencies: list[float] = []
    with httpx2.Client(base_url=base_url, timeout=120) as client:
        after = _last_seq(client, job_id)  # only events written from now on are timed
        with client.stream("GET", f"/jobs/{job_id}/events", params={"after": after}) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    if "written_at" in data.get("metrics", {}):
                        latencies.append(time.time() - data["metrics"]["written_at"])
                        if len(latencies) >= count:
                            break
    return latencies


def _last_seq(client: Any, job_id: str) -> int:
    with client.stream("GET", f"/jobs/{job_id}/events", params={"after": 0, "follow": "false"}) as response:
        ids = [int(line[3:]) for line in response.iter_lines() if line.startswith("id:")]
    return max(ids, default=0)


def _stop_jobs(state_dir: Path) -> None:
    """End the job the bench started: jobs outlive their service by design, so it is stopped by its process group."""
    import contextlib
    import signal
    import sqlite3

    from hud_vf_gym.service.runner import process_start_time

    with contextlib.closing(sqlite3.connect(state_dir / "service.db")) as connection:
        rows = list(connection.execute("SELECT pid, pid_start FROM jobs WHERE pid IS NOT NULL"))
    for pid, started in rows:
        if process_start_time(pid) == started:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while process_start_time(pid) == started and time.monotonic() < deadline:
                time.sleep(0.05)


def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until the service answers /health."""
    import httpx2

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}")
        try:
            if httpx2.get(base_url + "/health", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the service did not start in 120 s")


def main() -> None:
    """Start the service, submit the job, measure, print (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Measuring time per requests/s figure.")
    parser.add_argument("--events", type=int, default=50, help="Metric events timed for the latency.")
    parser.add_argument("--interval", type=float, default=0.1, help="Seconds between metric lines.")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "STATE_DIR", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]), args.interval, int(args.serve[2]))
        return
    import socket

    import httpx2

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    steps = WARM_STEPS + int((4 * args.seconds + 60) / args.interval) + args.events * 2
    with tempfile.TemporaryDirectory(prefix="bench-service-", ignore_cleanup_errors=True) as state:
        command = [sys.executable, __file__, "--serve", str(port), state, str(steps), "--interval", str(args.interval)]
        process = subprocess.Popen(command)
        try:
            wait_ready(base_url, process)
            job_id = httpx2.post(base_url + "/train", json={"model_name": "bench", "num_tasks": 1}).json()["job_id"]
            while httpx2.get(f"{base_url}/jobs/{job_id}").json()["step"] < WARM_STEPS:
                time.sleep(0.2)
            results: dict[str, Any] = {"requests_per_s": {}}
            for path in ("/health", f"/jobs/{job_id}"):
                for in_flight in (1, 8):
                    rate = asyncio.run(requests_per_second(base_url + path, args.seconds, in_flight))
                    name = "/jobs/{id}" if path != "/health" else path
                    results["requests_per_s"][f"GET {name}, {in_flight} in flight"] = round(rate, 1)
            latencies = sorted(event_latencies(base_url, job_id, args.events))
            results["event_latency_ms"] = {
                "median": round(1000 * statistics.median(latencies), 1),
                "p90": round(1000 * latencies[int(0.9 * (len(latencies) - 1))], 1),
                "max": round(1000 * latencies[-1], 1),
                "events": len(latencies),
            }
        finally:
            process.terminate()
            process.wait(timeout=30)
            _stop_jobs(Path(state))
    for name, rate in results["requests_per_s"].items():
        print(f"{name:32s} {rate:8.1f} requests/s")
    latency = results["event_latency_ms"]
    print(
        f"event latency (metric written -> SSE event received): median {latency['median']} ms, "
        f"p90 {latency['p90']} ms, max {latency['max']} ms over {latency['events']} events"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
