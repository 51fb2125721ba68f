"""HUDRollout: multi-turn 2048 episodes through the real Harness and MCP servers, as TRL's rollout_func.

The first half drives the rollout with a scripted generator (fixed replies, exact tokens), so the token sequence,
the mask and the caps can be checked exactly. The second half runs two real GRPO steps with a tiny random model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from hud_vf_gym.config import load_config
from hud_vf_gym.core import rubric as rubric
from hud_vf_gym.core.harness import observe
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.errors import ConfigError, MCPServerError, TaskError
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.training import (
    COMPONENT_NAMES,
    ChatFormat,
    GeneratedTurn,
    HUDRollout,
    TokenLimits,
    VLLMServerGenerator,
    initial_messages,
    reward_functions,
    training_dataset,
)
from hud_vf_gym.types import ToolCall

transformers = pytest.importorskip("transformers", reason="the training tests need: pip install -e '.[train]'")

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using 'rollout_func':UserWarning"),  # TRL marks it experimental
]


CHATML_USER = "<|im_start|>user\n"
NEXT_ASSISTANT = "<|im_end|>\n<|im_start|>assistant\n"


# -- helpers ------------------------------------------------------------------------------------------------------


class ScriptedGenerator:
    """Replies with fixed texts, the i-th generate call of a rollout writing replies[i] (+ EOS unless cut)."""

    def __init__(self, tokenizer: Any, replies: Sequence[str], *, logprob: float | None = None) -> None:
        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.logprob = logprob
        self.calls: list[int] = []  # max_new_tokens of each call
        self._turn = 0

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        self._turn = 0
        yield

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[GeneratedTurn]:
        self.calls.append(max_new_tokens)
        reply = self.replies[min(self._turn, len(self.replies) - 1)]
        self._turn += 1
        ids = self.tokenizer.encode(reply, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        ids = ids[:max_new_tokens]
        logprobs = None if self.logprob is None else (self.logprob,) * len(ids)
        return [GeneratedTurn(tuple(ids), logprobs) for _ in contexts]


def servers_left() -> list[str]:
    """Command lines of MCP server processes this test process still has (there should be none)."""
    children = psutil.Process().children(recursive=True)
    return [" ".join(child.cmdline()) for child in children if child.is_running() and "text_2048" in child.cmdline()]


def server_pids() -> set[int]:
    """The process ids of the MCP servers this test process has running."""
    children = psutil.Process().children(recursive=True)
    return {child.pid for child in children if child.is_running() and "text_2048" in " ".join(child.cmdline())}


def fake_trainer(tokenizer: Any, max_completion_length: int = 512) -> Any:
    """What the rollout reads from a GRPOTrainer when a generator is given."""
    return SimpleNamespace(
        processing_class=tokenizer,
        args=SimpleNamespace(max_completion_length=max_completion_length, use_vllm=False),
        eos_token_ids=[tokenizer.eos_token_id],
    )


def spans(mask: Sequence[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of equal mask values as (value, start, end)."""
    runs: list[tuple[int, int, int]] = []
    for index, value in enumerate(mask):
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1], index + 1)
        else:
            runs.append((value, index, index + 1))
    return runs


def check_mask_against_messages(tokenizer: Any, completion: Sequence[int], mask: Sequence[int], result: Any) -> None:
    """Every masked span is exactly the template's wrapper around the next observation (or the closing EOS)."""
    eos = tokenizer.eos_token_id
    runs = spans(mask)
    assert runs[0][0] == 1, "a completion starts with the model's first turn"
    acted = [turn for turn in result.record.turns if turn.outcome not in (TurnOutcome.NOT_EXECUTED, TurnOutcome.DONE)]
    env_runs = [run for run in runs if run[0] == 0]
    shown = 0
    for _, start, end in env_runs:
        text = tokenizer.decode(completion[start:end], skip_special_tokens=False)
        model_closed = completion[start - 1] == eos
        if end == len(completion) and text == "<|im_end|>":  # the closing EOS the model did not write
            assert not model_closed
            continue
        observation = observe(acted[shown]).text
        prefix = "\n" if model_closed else "<|im_end|>\n"
        assert text == f"{prefix}{CHATML_USER}{observation}{NEXT_ASSISTANT}"
        assert observation == result.observations[shown]
        shown += 1
    assert shown == len(result.observations)
    assert completion[-1] == eos, "every row ends with EOS"


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def config() -> Any:
    return load_config("2048", max_turns=6)


@pytest.fixture(scope="module")
def tasks() -> tuple[Task, ...]:
    return load_taskset("2048", num_tasks=2).tasks


def broken_task(task: Task) -> Task:
    """The same 2048 task, but its server exits at once: the episode fails to start (ServerStartError)."""
    command = {"command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]}
    return dataclasses.replace(task, id="2048_broken_server", mcp_config={"text_2048": command})


def prompts_for(tasks: Sequence[Task], repeats: int) -> list[Any]:
    """TRL's prompts: each dataset prompt repeated num_generations times."""
    rows = training_dataset(tasks)["prompt"]
    return [row for row in rows for _ in range(repeats)]


# -- the package ---------------------------------------------------------------------------------------------------


def test_training_public_api_is_sorted_and_lazy() -> None:
    import hud_vf_gym.training as training

    assert training.__all__ == sorted(training.__all__)
    assert set(training.__all__) == set(training._LAZY_NAMES)
    assert all(getattr(training, name) is not None for name in training.__all__)
    heavy = "('torch', 'trl', 'transformers')"
    code = f"import sys, hud_vf_gym.training; print(sorted(m for m in {heavy} if m in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


# -- the sequence rule ---------------------------------------------------------------------------------------------


def test_chat_format_environment_text_is_the_template_wrapper(tokenizer: Any) -> None:
    chat = ChatFormat(tokenizer)
    assert chat.environment_text("OBS", model_closed_turn=True) == f"\n{CHATML_USER}OBS{NEXT_ASSISTANT}"
    assert chat.environment_text("OBS", model_closed_turn=False) == f"<|im_end|>\n{CHATML_USER}OBS{NEXT_ASSISTANT}"


def test_chat_format_refuses_template_that_rewrites_history(tokenizer: Any) -> None:
    template = "{% for m in messages[-1:] %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    chat = ChatFormat(tokenizer, chat_template=template)
    with pytest.raises(ConfigError, match="does not render a conversation as a prefix"):
        chat.environment_text("OBS", model_closed_turn=True)


def test_token_limits_refuse_episode_smaller_than_turn() -> None:
    with pytest.raises(ConfigError, match=r"TokenLimits.episode_tokens \(16\) must be larger than turn_tokens \(16\)"):
        TokenLimits(turn_tokens=16, episode_tokens=16)


def test_initial_messages_match_hudgym_prompt(config: Any, tasks: Sequence[Task]) -> None:
    import verifiers as vf

    from hud_vf_gym.core.harness import Observation
    from hud_vf_gym.env import _append_to_first_observation, _append_to_system_prompt

    task = dataclasses.replace(tasks[0], system_prompt="Task rules.")
    setup = Observation("BOARD")
    few_shot = [{"role": "user", "content": "Example board"}, {"role": "assistant", "content": "<tool>left()</tool>"}]
    state: dict[str, Any] = {  # verifiers' order: system prompt, few-shot examples, the task's question
        "prompt": [
            vf.SystemMessage(content=config.system_prompt),
            vf.UserMessage(content="Example board"),
            vf.AssistantMessage(content="<tool>left()</tool>"),
            vf.UserMessage(content=task.prompt),
        ]
    }
    _append_to_system_prompt(state, "Task rules.")
    _append_to_first_observation(state, setup)
    expected = [{"role": message.role, "content": message.content} for message in state["prompt"]]
    assert initial_messages(config, task, setup, few_shot) == expected


def test_training_dataset_refuses_duplicate_ids(tasks: Sequence[Task]) -> None:
    with pytest.raises(TaskError, match=r"task ids must be unique for training; repeated: 2048_3x3_target_16"):
        training_dataset([tasks[0], tasks[1], tasks[0]])


# -- scripted episodes ---------------------------------------------------------------------------------------------


def test_rollout_scripted_episode_masks_exactly_the_observations(
    tokenizer: Any, config: Any, tasks: Sequence[Task]
) -> None:
    replies = ["<tool>left()</tool>", "I am not sure.", '<tool>move("up")</tool>', "<tool>done()</tool>"]
    generator = ScriptedGenerator(tokenizer, replies)
    with HUDRollout(config, tasks, turn_tokens=32, generator=generator) as rollout:
        output = rollout(prompts_for(tasks, 2), fake_trainer(tokenizer))
    assert len(output["completion_ids"]) == 4
    for index, result in enumerate(rollout.last_episodes):
        completion, mask = output["completion_ids"][index], output["env_mask"][index]
        assert len(mask) == len(completion)
        assert result.stop_reason == "done"
        assert [turn.outcome for turn in result.record.turns] == [
            TurnOutcome.EXECUTED,
            TurnOutcome.PARSE_ERROR,
            TurnOutcome.EXECUTED,
            TurnOutcome.DONE,
        ]
        check_mask_against_messages(tokenizer, completion, mask, result)
        model_runs = [(start, end) for value, start, end in spans(mask) if value == 1]
        model_texts = [tokenizer.decode(completion[start:end], skip_special_tokens=True) for start, end in model_runs]
        assert model_texts == replies
        prompt_text = tokenizer.decode(output["prompt_ids"][index], skip_special_tokens=False)
        assert prompt_text == ChatFormat(tokenizer).render(result.prompt_messages, add_generation_prompt=True)
        assert "3x3 game initialized" in result.prompt_messages[-1]["content"]  # setup output in the first message
    assert servers_left() == []


def test_rollout_components_are_the_rubric_values(tokenizer: Any, config: Any, tasks: Sequence[Task]) -> None:
    generator = ScriptedGenerator(tokenizer, ["<tool>left()</tool>", "oops", "<tool>done()</tool>"])
    with HUDRollout(config, tasks[:1], turn_tokens=32, generator=generator) as rollout:
        output = rollout(prompts_for(tasks[:1], 2), fake_trainer(tokenizer))
    weights = config.rubric.weights.model_dump()
    for index, result in enumerate(rollout.last_episodes):
        state = {"hud": result.record}
        expected = {
            "task_completion": rubric.task_completion(state),
            "tool_execution": rubric.tool_execution(state),
            "format_compliance": rubric.format_compliance(state, parser_config=config.parser),
            "screenshot_behavior": rubric.screenshot_behavior(state),
            "thinking_quality": rubric.thinking_quality(state, thinking_bounds=config.rubric.thinking),
        }
        assert {name: output[name][index] for name in COMPONENT_NAMES} == pytest.approx(expected)
        assert output["hud_reward"][index] == pytest.approx(sum(weights[name] * expected[name] for name in expected))
        assert output["format_compliance"][index] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
        assert output["infra_error"][index] is None


def test_rollout_steps_reuse_the_warm_servers(tokenizer: Any, config: Any, tasks: Sequence[Task]) -> None:
    generator = ScriptedGenerator(tokenizer, ["<tool>left()</tool>", "<tool>done()</tool>"])
    with HUDRollout(config, tasks[:1], turn_tokens=32, generator=generator) as rollout:
        first = rollout(prompts_for(tasks[:1], 2), fake_trainer(tokenizer))
        servers = server_pids()
        second = rollout(prompts_for(tasks[:1], 2), fake_trainer(tokenizer))  # the next GRPO step
        assert server_pids() == servers
        assert rollout.harness.pool is not None
        assert (rollout.harness.pool.stats.opened, rollout.harness.pool.stats.reused) == (2, 2)
    assert len(servers) == 2  # one per rollout of the group, kept between steps
    assert second["hud_reward"] == first["hud_reward"]  # setup reset each game: the same seeded episodes again
    assert servers_left() == []


def test_rollout_max_turns_records_last_turn_without_acting(tokenizer: Any, tasks: Sequence[Task]) -> None:
    config = load_config("2048", max_turns=2)
    generator = ScriptedGenerator(tokenizer, ["<tool>left()</tool>"])
    with HUDRollout(config, tasks[:1], turn_tokens=32, generator=generator) as rollout:
        output = rollout(prompts_for(tasks[:1], 2), fake_trainer(tokenizer))
    result = rollout.last_episodes[0]
    assert result.stop_reason == "max_turns"
    assert [turn.outcome for turn in result.record.turns] == [TurnOutcome.EXECUTED, TurnOutcome.NOT_EXECUTED]
    assert len(result.observations) == 1
    check_mask_against_messages(tokenizer, output["completion_ids"][0], output["env_mask"][0], result)


def test_rollout_enforces_turn_and_episode_token_caps(tokenizer: Any, config: Any, tasks: Sequence[Task]) -> None:
    reply = "<tool>left()</tool> " + "and then some more words " * 20
    generator = ScriptedGenerator(tokenizer, [reply])
    with HUDRollout(config, tasks[:1], turn_tokens=12, generator=generator) as rollout:
        output = rollout(prompts_for(tasks[:1], 2), fake_trainer(tokenizer, max_completion_length=150))
    for index, result in enumerate(rollout.last_episodes):
        completion, mask = output["completion_ids"][index], output["env_mask"][index]
        assert len(completion) <= 150
        assert all(end - start <= 12 for value, start, end in spans(mask) if value == 1)
        assert result.stop_reason == "episode_tokens"
        check_mask_against_messages(tokenizer, completion, mask, result)
    assert max(generator.calls) <= 12


def test_rollout_infrastructure_failure_is_masked_and_unscored(
    tokenizer: Any, config: Any, tasks: Sequence[Task]
) -> None:
    mixed = [tasks[0], broken_task(tasks[0])]
    generator = ScriptedGenerator(tokenizer, ["<tool>left()</tool>", "<tool>done()</tool>"])
    with HUDRollout(config, mixed, turn_tokens=32, generator=generator) as rollout:
        output = rollout(prompts_for(mixed, 2), fake_trainer(tokenizer))
    broken = [index for index, task_id in enumerate(output["task_id"]) if task_id == "2048_broken_server"]
    assert broken == [2, 3]
    for index in broken:
        assert output["completion_ids"][index] == [tokenizer.eos_token_id]
        assert output["env_mask"][index] == [0]
        assert all(output[name][index] is None for name in (*COMPONENT_NAMES, "hud_reward"))
        assert output["infra_error"][index].startswith("ServerStartError: ")  # the wording depends on timing
        assert "MCP server 'text_2048'" in output["infra_error"][index]
        assert rollout.last_episodes[index].stop_reason == "infra_error"
    funcs, weights = reward_functions(config.rubric.weights)
    logged: dict[str, float] = {}
    kwargs = {key: value for key, value in output.items() if key not in ("prompt_ids", "completion_ids", "logprobs")}
    rewards = [func(log_metric=logged.__setitem__, **kwargs) for func in funcs]
    assert all(column[2] is None and column[3] is None for column in rewards)
    assert all(column[0] is not None for column in rewards)
    assert logged["infra_errors"] == 2.0
    assert weights == [0.8, 0.05, 0.15, 0.0, 0.0]  # configs/2048.yaml's rubric weights
    assert servers_left() == []


def test_rollout_bad_row_and_crashed_evaluator_are_masked_and_unscored(
    tokenizer: Any, config: Any, tasks: Sequence[Task]
) -> None:
    # issue 15: a row that cannot run (a hub function its server lacks) and a failed evaluation are kept out of
    # training like an infrastructure failure; the good row of the same batch still trains
    typo = dataclasses.replace(
        tasks[0], id="2048_typo", setup_calls=(ToolCall("setup", {"name": "boards", "arguments": {}}),)
    )
    crashed = dataclasses.replace(
        tasks[0],
        id="2048_crashed_evaluator",
        evaluate_calls=(ToolCall("evaluate", {"name": "max_number", "arguments": {"target": "many"}}),),
    )
    mixed = [tasks[0], typo, crashed]
    generator = ScriptedGenerator(tokenizer, ["<tool>left()</tool>", "<tool>done()</tool>"])
    with HUDRollout(config, mixed, turn_tokens=32, generator=generator) as rollout:
        output = rollout(prompts_for(mixed, 1), fake_trainer(tokenizer))
    assert output["task_id"] == [tasks[0].id, "2048_typo", "2048_crashed_evaluator"]
    assert output["hud_reward"][0] is not None
    for index in (1, 2):
        assert output["completion_ids"][index] == [tokenizer.eos_token_id] and output["env_mask"][index] == [0]
        assert all(output[name][index] is None for name in (*COMPONENT_NAMES, "hud_reward"))
        assert output["infra_error"][index] is None  # neither is the infrastructure's fault
    assert "(id '2048_typo'): setup_tool: tool 'setup' has no function 'boards'" in output["task_error"][1]
    assert output["evaluation_error"][2].startswith("task '2048_crashed_evaluator': the evaluation failed: ")
    assert [episode.stop_reason for episode in rollout.last_episodes][1:] == ["task_error", "evaluation_error"]
    funcs, _ = reward_functions(config.rubric.weights)
    logged: dict[str, float] = {}
    kwargs = {key: value for key, value in output.items() if key not in ("prompt_ids", "completion_ids", "logprobs")}
    funcs[0](log_metric=logged.__setitem__, **kwargs)
    assert (logged["infra_errors"], logged["task_errors"], logged["evaluation_failures"]) == (0.0, 1.0, 1.0)
    assert servers_left() == []


def test_rollout_refuses_batch_where_every_rollout_failed(tokenizer: Any, config: Any, tasks: Sequence[Task]) -> None:
    broken = [broken_task(tasks[0])]
    with HUDRollout(config, broken, generator=ScriptedGenerator(tokenizer, ["<tool>left()</tool>"])) as rollout:
        with pytest.raises(MCPServerError, match=r"all 2 rollouts of this batch failed for infrastructure reasons"):
            rollout(prompts_for(broken, 2), fake_trainer(tokenizer))


def test_rollout_vllm_style_logprobs_align_with_tokens(tokenizer: Any, config: Any, tasks: Sequence[Task]) -> None:
    generator = ScriptedGenerator(tokenizer, ["<tool>left()</tool>", "<tool>done()</tool>"], logprob=-0.5)
    with HUDRollout(config, tasks[:1], turn_tokens=32, generator=generator) as rollout:
        output = rollout(prompts_for(tasks[:1], 2), fake_trainer(tokenizer))
    for logprobs, mask in zip(output["logprobs"], output["env_mask"], strict=True):
        assert len(logprobs) == len(mask)
        assert logprobs == [-0.5 if value else 0.0 for value in mask]


def test_rollout_refuses_unknown_task(tokenizer: Any, config: Any, tasks: Sequence[Task]) -> None:
    with HUDRollout(config, tasks[:1], generator=ScriptedGenerator(tokenizer, ["x"])) as rollout:
        prompt = [{"role": "user", "content": "play", "task_id": "nope"}]
        with pytest.raises(TaskError, match=r"prompt 0: names task 'nope', which this rollout was not given"):
            rollout([prompt], fake_trainer(tokenizer))


def test_vllm_server_generator_reads_token_ids_and_sampled_logprobs() -> None:
    class FakeClient:
        def __init__(self) -> None:
            self.requests: list[dict[str, Any]] = []

        def generate(self, **request: Any) -> dict[str, Any]:
            self.requests.append(request)
            return {"completion_ids": [[5, 6, 2]], "logprobs": [[[-0.1], [-0.2], [-0.3]]]}

    client = FakeClient()
    generator = VLLMServerGenerator(client, {"temperature": 0.7, "top_p": 1.0})
    with generator.session():
        (turn,) = generator.generate([[1, 2, 3]], 16)
    assert turn == GeneratedTurn((5, 6, 2), (-0.1, -0.2, -0.3))
    assert client.requests == [
        {"prompts": [[1, 2, 3]], "n": 1, "max_tokens": 16, "logprobs": 0, "temperature": 0.7, "top_p": 1.0}
    ]


# -- two real GRPO steps -------------------------------------------------------------------------------------------


def distinct_token_share(completion_ids: list[list[int]], infra_error: list[str | None], **kwargs: Any) -> list[Any]:
    """A reward that differs between random samples (the rubric is 0 for a random model, so GRPO would not move)."""
    return [None if error else len(set(ids)) / len(ids) for ids, error in zip(completion_ids, infra_error, strict=True)]


@pytest.fixture(scope="module")
def grpo_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two GRPO steps on two 2048 tasks, one of whose server dies at start; every rollout output is recorded."""
    trl = pytest.importorskip("trl", reason="the training tests need: pip install -e '.[train]'")
    import torch

    config = load_config("2048", max_turns=3)
    good = load_taskset("2048", num_tasks=1).tasks[0]
    tasks = [good, broken_task(good)]
    rollout = HUDRollout(config, tasks, turn_tokens=12)  # short turns keep the test fast
    outputs: list[tuple[dict[str, Any], tuple[Any, ...]]] = []

    def recording_rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        output = rollout(prompts, trainer)
        outputs.append((output, rollout.last_episodes))
        return output

    funcs, weights = reward_functions(config.rubric.weights)
    args = trl.GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("grpo")),
        use_cpu=True,  # no GPU in CI
        bf16=False,  # fp32 on CPU
        max_steps=2,  # two optimizer steps are enough to see the weights move
        per_device_train_batch_size=4,  # two tasks x num_generations
        num_generations=2,  # the smallest group GRPO allows
        max_completion_length=96,  # the episode cap the rollout enforces
        learning_rate=1e-2,  # large, so one step visibly changes a random model
        logging_steps=1,  # log both steps
        report_to="none",  # offline
        save_strategy="no",  # nothing to resume here
        gradient_checkpointing=False,  # the tiny model needs no memory savings
        reward_weights=[*weights, 1.0],  # the rubric's weights, plus the test reward at 1.0
        seed=0,  # reproducible sampling
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainer = trl.GRPOTrainer(
        model=model,
        processing_class=transformers.AutoTokenizer.from_pretrained(tiny_model),
        reward_funcs=[*funcs, distinct_token_share],
        args=args,
        train_dataset=training_dataset(tasks),
        rollout_func=recording_rollout,
    )
    try:
        trainer.train()
    finally:
        rollout.close()
    return SimpleNamespace(trainer=trainer, before=before, outputs=outputs, tokenizer=trainer.processing_class)


def test_grpo_two_steps_loss_is_finite_and_weights_change(grpo_run: Any) -> None:
    losses = [entry["loss"] for entry in grpo_run.trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    changed = [
        name
        for name, param in grpo_run.trainer.model.named_parameters()
        if not param.detach().equal(grpo_run.before[name])
    ]
    assert set(changed) == set(grpo_run.before), f"unchanged: {set(grpo_run.before) - set(changed)}"
    assert servers_left() == []


def test_grpo_logs_every_reward_component_and_infra_errors(grpo_run: Any) -> None:
    step_logs = [entry for entry in grpo_run.trainer.state.log_history if "loss" in entry]
    for entry in step_logs:
        for name in COMPONENT_NAMES:
            assert f"rewards/{name}/mean" in entry
        assert "reward" in entry and "infra_errors" in entry
        assert entry["infra_errors"] == 2.0  # the broken task's two rollouts in every batch
        assert entry["turns"] > 0


def test_grpo_masks_observations_and_excludes_failed_rollouts(grpo_run: Any) -> None:
    tokenizer = grpo_run.tokenizer
    assert len(grpo_run.outputs) == 2
    for output, results in grpo_run.outputs:
        for index, result in enumerate(results):
            completion, mask = output["completion_ids"][index], output["env_mask"][index]
            if result.task_id == "2048_broken_server":
                assert (completion, mask) == ([tokenizer.eos_token_id], [0])
                assert output["hud_reward"][index] is None
                continue
            check_mask_against_messages(tokenizer, completion, mask, result)
            assert len(completion) <= 96
            assert result.observations, "the episode acted at least once"
