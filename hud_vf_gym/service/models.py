"""The request and response bodies of the training service; together they are its OpenAPI schema.

Every request model forbids unknown fields (a typo is a 422 naming the field, not a silently ignored option), and
every field says what it means. The seed's field names are kept (`model_name`, `project`, `base_model`,
`num_steps`, `batch_size`, `learning_rate`, `use_ruler`, `judge_model`, `task_prompt`, `num_rollouts`,
`evaluation_prompt`); the rest are this package's (tasksets, environment configs, GRPO options, GPUs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "NAME_PATTERN",
    "ChatMessage",
    "Checkpoint",
    "EndpointSpec",
    "ErrorResponse",
    "EvaluateRequest",
    "EvaluateResponse",
    "FieldError",
    "Health",
    "JobAccepted",
    "JobList",
    "JobState",
    "JobStatus",
    "ModelInfo",
    "ModelList",
    "RolloutRequest",
    "RolloutResponse",
    "TaskSource",
    "TrainRequest",
    "Trajectory",
    "TrajectoryScore",
    "ValidationErrorResponse",
]

# Names become folder names (models/<project>/<model_name>), so they are plain words: no '/', no '..'.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
TASKSET_MAX_CHARS = 512
TEXT_MAX_CHARS = 100_000  # a system prompt or message longer than this is a mistake, not a prompt
MAX_INLINE_TASKS = 1000
MAX_TRAJECTORIES = 256  # per /evaluate request
MAX_MESSAGES = 512  # per trajectory

JobState = Literal["queued", "running", "succeeded", "failed", "canceled", "interrupted"]
"""A training job's state. `interrupted`: its process ended without an exit status (the machine or the service
was killed with it); `POST /jobs/{id}/resume` continues it from its last checkpoint."""


class _Request(BaseModel):
    # strict: `true` is not the number 1 and "5" is not 5; a request says what it means or gets a 422
    model_config = ConfigDict(extra="forbid", strict=True)


# -- shared pieces --------------------------------------------------------------------------------------------------


class ChatMessage(_Request):
    """One chat message of a trajectory or a few-shot example."""

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Who wrote the message.")
    content: str = Field(max_length=TEXT_MAX_CHARS, description="The message text.")


class EndpointSpec(_Request):
    """An OpenAI-compatible chat endpoint (vLLM, an API, another service).

    Its API key is never sent in a request: `api_key_env` names an environment variable of the service that holds
    it, and the operator must allow that name (`hud-vf-gym serve --allow-env NAME`). Endpoints on 127.0.0.1 need no
    key.
    """

    base_url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048, description="e.g. `http://127.0.0.1:8001/v1`.")
    model: str = Field(min_length=1, max_length=256, description="The model name the endpoint serves.")
    api_key_env: str | None = Field(
        default=None, pattern=ENV_NAME_PATTERN, description="The service's environment variable holding the API key."
    )


class TaskSource(_Request):
    """Where a request's HUD tasks come from: a named taskset, or task rows given inline."""

    taskset: str | None = Field(
        default=None,
        min_length=1,
        max_length=TASKSET_MAX_CHARS,
        description="A built-in taskset (`2048`, `browser`, `miniwob`), a Hugging Face dataset id, or a .json/.jsonl "
        "file or saved dataset under the service's working directory. Default: `2048` when `tasks` is not given.",
    )
    tasks: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INLINE_TASKS,
        description="HUD task rows (`id`, `prompt`, `mcp_config`, `setup_tool`, `evaluate_tool`, `metadata`). "
        "stdio `mcp_config` servers must be built-in environments or on the service's allow-list.",
    )
    num_tasks: int | None = Field(default=None, ge=1, le=MAX_INLINE_TASKS, description="Use the first N tasks only.")
    config: str = Field(
        default="2048",
        min_length=1,
        max_length=TASKSET_MAX_CHARS,
        description="Environment config: a built-in name (`2048`, `default`, `browser-text`) or a YAML file under "
        "the service's working directory.",
    )
    task_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=TEXT_MAX_CHARS,
        description="A system prompt that replaces each task's own (the seed's `task_prompt`).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TaskSource:
        if self.taskset is not None and self.tasks is not None:
            raise ValueError("give either taskset (a name or file) or tasks (inline rows), not both")
        return self


# -- training -------------------------------------------------------------------------------------------------------


class TrainRequest(TaskSource):
    """`POST /train`: a GRPO training run of a model on HUD tasks, run as a job of its own."""

    model_name: str = Field(pattern=NAME_PATTERN, description="The trained model's name (a folder name).")
    project: str = Field(default="default", pattern=NAME_PATTERN, description="Groups models; a folder name.")
    base_model: str = Field(
        default="embedded",
        min_length=1,
        max_length=512,
        description="A Hugging Face model id, a local model folder, or `embedded` (SmolLM2-135M-Instruct, offline).",
    )
    num_steps: int = Field(default=10, ge=1, le=100_000, description="Optimizer steps (TRL's `max_steps`).")
    batch_size: int = Field(default=4, ge=1, le=4096, description="Episodes per device per step.")
    num_generations: int = Field(
        default=4, ge=2, le=256, description="Episodes per task in a GRPO group; must divide `batch_size`."
    )
    learning_rate: float = Field(default=1e-5, gt=0, le=1, description="The optimizer's learning rate.")
    max_turns: int | None = Field(default=None, ge=1, le=1000, description="Model turns per episode (config's).")
    max_turn_tokens: int = Field(default=64, ge=1, le=32_768, description="New tokens per turn.")
    max_completion_length: int = Field(
        default=768, ge=8, le=262_144, description="Token cap of a whole episode (TRL's `max_completion_length`)."
    )
    temperature: float = Field(default=1.0, gt=0, le=2, description="Sampling temperature of the episodes.")
    beta: float = Field(default=0.0, ge=0, le=10, description="KL coefficient; 0 loads no reference model.")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(default="dapo", description="TRL's loss_type.")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Training seed.")
    save_steps: int = Field(default=10, ge=1, le=100_000, description="A checkpoint every N steps (and at the end).")
    use_peft: bool = Field(default=False, description="Train a LoRA adapter instead of every weight.")
    lora_r: int = Field(default=16, ge=1, le=1024, description="LoRA rank when `use_peft`.")
    few_shot: list[ChatMessage] | None = Field(
        default=None,
        max_length=64,
        description="Example user/assistant turns placed between the system prompt and the task. Default: the "
        "built-in 2048 examples when training on the built-in 2048 taskset, none otherwise.",
    )
    use_ruler: bool = Field(
        default=False,
        description="Add a RULER reward (an LLM judge ranking each group's episodes) to the rubric's rewards.",
    )
    judge_model: str | None = Field(
        default=None, min_length=1, max_length=256, description="The judge's model name at `judge.base_url`."
    )
    judge: EndpointSpec | None = Field(
        default=None, description="The judge endpoint for `use_ruler` (default: the service's default model)."
    )
    gpus: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="GPU indices the job uses; empty trains on CPU. One job per GPU set runs at a time, jobs whose "
        "sets overlap wait in a queue.",
    )
    placement: Literal["local", "skypilot"] = Field(
        default="local", description="Where the job runs: this machine, or rented GPUs through SkyPilot."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainRequest:
        problems = []
        if self.batch_size % self.num_generations:
            problems.append(
                f"batch_size ({self.batch_size}) must be divisible by num_generations ({self.num_generations}); "
                "GRPO compares the episodes of one task in a group"
            )
        if len(set(self.gpus)) != len(self.gpus) or any(not 0 <= gpu < 1024 for gpu in self.gpus):
            problems.append(f"gpus must be distinct indices from 0, got {self.gpus}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class JobAccepted(BaseModel):
    """The answer to `POST /train`: the job's id and where to follow it."""

    job_id: str = Field(description="The job's id.")
    state: JobState = Field(description="`queued` or `running` for a new job; any state for an existing one.")
    queue_position: int | None = Field(description="1 = next to start; null unless queued.")
    created: bool = Field(description="False when an existing job was returned (same Idempotency-Key or spec).")
    status_url: str = Field(description="`GET` this for the job's status.")
    events_url: str = Field(description="`GET` this for its server-sent events (step metrics, log lines, state).")


class JobStatus(BaseModel):
    """A training job as the store knows it."""

    job_id: str
    project: str
    model_name: str
    state: JobState
    queue_position: int | None = Field(description="1 = next to start; null unless queued.")
    step: int = Field(description="The last optimizer step whose metrics were logged.")
    num_steps: int
    progress: float = Field(description="step / num_steps, 0 to 1.")
    gpus: list[int]
    attempt: int = Field(description="1 for the first run; resumes add one.")
    created_at: str = Field(description="ISO 8601, UTC.")
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    error: str | None = Field(description="Why the job failed or was interrupted.")
    metrics: dict[str, float] = Field(description="The last logged step metrics (`reward`, `loss`, ...).")
    rewards: list[list[float]] = Field(description="[step, mean reward] for every logged step: the reward curve.")
    checkpoints: list[int] = Field(description="Steps with a saved checkpoint.")
    output_dir: str = Field(description="Where the model and its checkpoints are written.")
    spec: dict[str, Any] = Field(description="The request that started the job, secrets redacted.")


class JobList(BaseModel):
    """Every job, newest first."""

    jobs: list[JobStatus]


# -- models ---------------------------------------------------------------------------------------------------------


class Checkpoint(BaseModel):
    """A saved training checkpoint."""

    step: int
    path: str


class ModelInfo(BaseModel):
    """A trained (or training) model: a resource with its files, checkpoints and metrics."""

    project: str
    model_name: str
    base_model: str
    job_id: str = Field(description="The job that trains it.")
    state: JobState = Field(description="Its job's state.")
    path: str = Field(description="The model folder (the final model once the job succeeded).")
    step: int = Field(description="The last logged step.")
    checkpoints: list[Checkpoint]
    metrics: dict[str, float] = Field(description="The last logged step metrics.")


class ModelList(BaseModel):
    """Every model of the service."""

    models: list[ModelInfo]


# -- rollouts and evaluation ----------------------------------------------------------------------------------------


class RolloutRequest(TaskSource):
    """`POST /rollout`: run a model on HUD tasks (the `hud-vf-gym eval` harness) and return the trajectories."""

    model_name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="A model this service trained (with `project`); unset: `endpoint` or the default model.",
    )
    project: str = Field(default="default", pattern=NAME_PATTERN, description="The trained model's project.")
    endpoint: EndpointSpec | None = Field(
        default=None, description="An OpenAI-compatible endpoint to roll out (unset: the service's default model)."
    )
    num_rollouts: int = Field(default=1, ge=1, le=64, description="Rollouts of each task.")
    max_turns: int = Field(default=10, ge=1, le=1000, description="Model turns per rollout.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature; 0 is greedy.")
    max_tokens: int = Field(default=64, ge=1, le=32_768, description="Most tokens per model turn.")
    seed: int | None = Field(default=0, ge=0, le=2**31 - 1, description="Sampling seed (plus the rollout index).")
    concurrency: int = Field(default=4, ge=1, le=64, description="Rollouts run at the same time.")
    dataset_name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Also store the trajectories as the dataset `<state-dir>/datasets/<name>.jsonl`.",
    )

    @model_validator(mode="after")
    def _one_model(self) -> RolloutRequest:
        if self.model_name is not None and self.endpoint is not None:
            raise ValueError("give either model_name (a model this service trained) or endpoint, not both")
        return self


class Trajectory(BaseModel):
    """One episode: its messages, its reward and the rubric's components."""

    model_config = ConfigDict(extra="forbid", strict=True)

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES, description="The whole episode.")
    task_id: str | None = Field(default=None, max_length=512, description="The task it played.")
    reward: float | None = Field(
        default=None, description="The rubric's weighted reward; null when the episode failed (infrastructure)."
    )
    components: dict[str, float] = Field(default_factory=dict, description="Each rubric component's value.")
    error: str | None = Field(default=None, max_length=TEXT_MAX_CHARS, description="Why the episode failed.")


class RolloutResponse(BaseModel):
    """The trajectories of a `/rollout` request."""

    rollout_id: str
    model: str = Field(description="The model that played.")
    trajectories: list[Trajectory]
    mean_reward: float | None = Field(description="Over the episodes that did not fail; null if all failed.")
    failed: int = Field(description="Episodes that failed for infrastructure reasons (kept out of the mean).")
    dataset: str | None = Field(description="The stored dataset file, when `dataset_name` was given.")


class EvaluateRequest(_Request):
    """`POST /evaluate`: score trajectories with an LLM judge (RULER ranks a group together) and/or the rubric."""

    trajectories: list[Trajectory] = Field(min_length=1, max_length=MAX_TRAJECTORIES)
    method: Literal["ruler", "judge", "rubric"] = Field(
        default="ruler",
        description="`ruler`: the judge scores the trajectories relative to each other, in one call (RULER); "
        "`judge`: the judge scores each trajectory alone; `rubric`: the rewards the rubric recorded (from /rollout).",
    )
    judge_model: str | None = Field(
        default=None, min_length=1, max_length=256, description="The judge's model name at `judge.base_url`."
    )
    judge: EndpointSpec | None = Field(
        default=None, description="The judge endpoint (unset: the service's default model, e.g. the embedded one)."
    )
    evaluation_prompt: str | None = Field(
        default=None, min_length=1, max_length=TEXT_MAX_CHARS, description="What the judge should look for."
    )

    @model_validator(mode="after")
    def _judge_model_with_endpoint(self) -> EvaluateRequest:
        if self.judge_model is not None and self.judge is not None and self.judge_model != self.judge.model:
            raise ValueError("judge_model and judge.model differ; give the model name once, in judge.model")
        return self


class TrajectoryScore(BaseModel):
    """One trajectory's score."""

    index: int = Field(description="Its position in the request.")
    score: float | None = Field(description="0 to 1; null when the judge's answer could not be read.")
    rubric_reward: float | None = Field(description="The reward the rubric recorded with the trajectory, if any.")
    explanation: str | None = Field(description="The judge's reasoning, or why there is no score.")


class EvaluateResponse(BaseModel):
    """Scores of an `/evaluate` request."""

    method: Literal["ruler", "judge", "rubric"]
    judge: str | None = Field(description="The judge model; null for `rubric`.")
    backend: str = Field(description="`art` (ART's RULER), `prompt` (this service's judge prompt) or `rubric`.")
    scores: list[TrajectoryScore]
    mean_score: float | None


# -- health and errors ----------------------------------------------------------------------------------------------


class Health(BaseModel):
    """`GET /health`: the service is up, its version, backend and which keys it has (never their values)."""

    status: Literal["healthy"]
    version: str
    backend: Literal["local"] = Field(description="Where training jobs run.")
    auth: bool = Field(description="Whether requests need a Bearer token.")
    paused: bool = Field(description="Whether queued jobs are held.")
    default_model: str = Field(description="What /rollout and /evaluate use when a request names no model.")
    keys_configured: dict[str, bool] = Field(description="Environment variables the service may use, and if set.")
    jobs: dict[str, int] = Field(description="Jobs by state.")


class ErrorResponse(BaseModel):
    """An error: what went wrong and how to fix it."""

    detail: str


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int] = Field(description="Where: `body`, then the field path.")
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """A request that could not be used: every invalid field (400 for a body that is not JSON at all)."""

    detail: list[FieldError]
