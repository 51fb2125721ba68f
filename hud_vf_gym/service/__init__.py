"""The training service behind `hud-vf-gym serve`: an HTTP API for training jobs, rollouts and evaluation.

Modules, one job each:

- `settings`: what the operator chose (bind address, state folder, token, allow-lists), checked at start.
- `models`: the request and response bodies (pydantic, `extra="forbid"`), which are the OpenAPI schema.
- `store`: the SQLite (WAL) job store: jobs, their events, checkpoints, idempotency keys.
- `core`: `TrainingService`, the operations behind the routes (submit, describe, delete), free of HTTP.
- `sources`: a request's tasks and config, loaded and checked before anything runs.
- `jobs`: the training command of a job (`training_command`, the one place to change what a job runs).
- `runner`: starts each job as a child process, tails its log into events, queues jobs per GPU set, re-attaches
  after a restart.
- `supervise`: the small parent of each training process that records its exit status (`python -m ...supervise`).
- `logparse`: a trainer's log line -> step metrics.
- `security`: the stdio command allow-list, which variables and paths a request may name, secret redaction;
  `auth`: the Bearer token.
- `rollouts`, `judge`: `POST /rollout` (the `hud-vf-gym eval` harness) and `POST /evaluate` (RULER or an LLM judge);
  `ruler_reward`: the RULER reward a training job with `use_ruler` adds.
- `page`: the status page at `/` (server-rendered HTML with an SVG reward curve).
- `app`, `routes_*`: the FastAPI application; `server`: uvicorn.

FastAPI and uvicorn are the `service` extra; nothing here imports them until the service starts.
"""
