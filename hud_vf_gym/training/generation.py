"""The two ways a rollout gets the model's next turn: the trainer's own model, or a vLLM server.

Both take token-id contexts (the prompt and every turn so far, exactly as the sequence holds them) and return the
token ids the model sampled, so nothing is ever re-tokenised:

- `TransformersGenerator`: the model being trained, through TRL's `unwrap_model_for_generation` and `generate`,
  with the trainer's sampling settings. Used on CPU and whenever `use_vllm` is off. It returns no logprobs (TRL
  needs them only for vLLM's importance-sampling correction). Within one rollout call it keeps the key/value cache
  from turn to turn (`hud_vf_gym.training.turn_cache`), so each turn reads only the tokens that are new.
- `VLLMServerGenerator`: a vLLM server started beside the trainer (`train/launch.sh`), through TRL's `VLLMClient`
  (`/v1/completions` with token-id prompts). It returns each sampled token's logprob. The trainer pushes its
  weights to the server before every rollout call.

A generator's `session()` is entered once per rollout call, around all of its turns: under DeepSpeed ZeRO-3 that
gathers the weights once, which every process must do the same number of times, however many turns each one's
episodes take.

torch and trl are imported inside the functions that need them, so this module imports without them.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hud_vf_gym.errors import ConfigError, DependencyNotInstalled
from hud_vf_gym.training.turn_cache import TurnCache, supports_model

__all__ = [
    "GeneratedTurn",
    "Generator",
    "TransformersGenerator",
    "VLLMServerGenerator",
    "select_generator",
]

INSTALL_TRAIN = 'pip install "hud-vf-gym[train]"'
INSTALL_VLLM = 'pip install "hud-vf-gym[train,gpu]"'


@dataclass(frozen=True, slots=True)
class GeneratedTurn:
    """What the model wrote for one context: sampled token ids and, when the backend reports them, their logprobs."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None = None


class Generator(Protocol):
    """A generation backend: `generate` may be called any number of times inside one `session()`."""

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Hold what generation needs (gathered weights, an eval context) for one rollout call."""

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[GeneratedTurn]:
        """Sample one continuation per context, at most `max_new_tokens` tokens each, stopping at EOS."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"GRPO training needs {module!r}, which is not installed; run: {INSTALL_TRAIN}"
        raise DependencyNotInstalled(message) from exc


class TransformersGenerator:
    """The trainer's own model generates, batched and left-padded, with the trainer's `generation_config`.

    Args:
        trainer: a TRL `GRPOTrainer` (its `model_wrapped`, `accelerator`, `args`, `generation_config`,
            `generation_kwargs` and `processing_class` are read).
        reuse_cache: keep the key/value cache between the turns of one rollout call (see `turn_cache`); False
            re-reads every context in full on every turn. Models whose cache cannot hold masked positions
            (sliding-window or recurrent layers) always re-read.
    """

    def __init__(self, trainer: Any, *, reuse_cache: bool = True) -> None:
        """Keep the trainer; the model is unwrapped only inside `session()`."""
        if getattr(trainer.args, "use_vllm", False):
            raise ConfigError("TransformersGenerator is for use_vllm=False; with vLLM use VLLMServerGenerator")
        if not getattr(trainer.args, "ds3_gather_for_generation", True):
            raise ConfigError(
                "multi-turn rollouts need ds3_gather_for_generation=True: without gathered weights every ZeRO-3 "
                "process would have to generate the same number of turns; set it back to true or use vLLM"
            )
        self.trainer = trainer
        self.reuse_cache = reuse_cache
        self._model: Any = None
        self._turns: TurnCache | None = None
        self._configs: dict[int, Any] = {}

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Unwrap (and under ZeRO-3 gather) the model once, with gradients off, for the whole rollout call."""
        torch = _import("torch")
        trl_models = _import("trl.models")
        from hud_vf_gym.local_model.skinny_linear import skinny_linear

        trainer, args = self.trainer, self.trainer.args
        with (
            trl_models.unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=args.ds3_gather_for_generation,
                generation_kwargs=getattr(trainer, "generation_kwargs", None),
                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
            ) as model,
            torch.no_grad(),
            skinny_linear(model),  # decoding steps on CPU: a few rows per weight matrix
        ):
            self._model = model
            try:
                yield
            finally:
                self._model, self._turns = None, None  # the weights change before the next call: drop the cache

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[GeneratedTurn]:
        """Sample every context in one left-padded batch; each row's tokens end at its first EOS."""
        if self._model is None:
            raise RuntimeError("TransformersGenerator.generate() was called outside session()")
        torch = _import("torch")
        tokenizer = self.trainer.processing_class
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        device = self.trainer.accelerator.device
        turns = self._turn_cache(pad_id, device)
        if turns is not None:
            input_ids, attention_mask = turns.prepare(contexts)
            cache_kwargs = {"cache": turns.cache}
        else:
            width = max(len(context) for context in contexts)
            input_ids = torch.tensor([[pad_id] * (width - len(context)) + list(context) for context in contexts])
            attention_mask = torch.tensor([[0] * (width - len(context)) + [1] * len(context) for context in contexts])
            input_ids, attention_mask, cache_kwargs = input_ids.to(device), attention_mask.to(device), {}
        width = int(input_ids.shape[1])
        output = self._model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=self._generation_config(max_new_tokens),
            **cache_kwargs,
        )
        stops = set(self.stop_token_ids())
        generated = []
        for row in output[:, width:].tolist():
            end = next((index + 1 for index, token in enumerate(row) if token in stops), len(row))
            generated.append(GeneratedTurn(tuple(row[:end])))
        if turns is not None:
            turns.absorb(output, [len(turn.token_ids) for turn in generated])
        return generated

    def _turn_cache(self, pad_id: int, device: Any) -> TurnCache | None:
        """This session's turn cache, or None when every turn re-reads its context."""
        if not self.reuse_cache or not supports_model(self._model):
            return None
        if getattr(self.trainer.generation_config, "cache_implementation", None) is not None:
            return None  # the trainer asked generate for a cache of its own kind (static, offloaded, ...)
        if self._turns is None:
            self._turns = TurnCache(self._model, pad_id, device)
        return self._turns

    def _generation_config(self, max_new_tokens: int) -> Any:
        """The trainer's sampling settings with this turn's token cap (a copy: the trainer's stays as it is)."""
        if max_new_tokens not in self._configs:
            config = copy.deepcopy(self.trainer.generation_config)
            config.max_new_tokens = max_new_tokens
            self._configs[max_new_tokens] = config
        return self._configs[max_new_tokens]

    def stop_token_ids(self) -> tuple[int, ...]:
        """The tokens that end a turn: the trainer's EOS ids (the tokenizer's and the generation config's)."""
        ids = getattr(self.trainer, "eos_token_ids", None) or [self.trainer.processing_class.eos_token_id]
        return tuple(int(token) for token in ids if token is not None)


class VLLMServerGenerator:
    """A vLLM server generates from token-id prompts and reports each sampled token's logprob.

    Args:
        client: a TRL `VLLMClient` (or anything with its `generate` signature).
        sampling: the sampling fields sent with every request (temperature, top_p, top_k, min_p,
            repetition_penalty) and `generation_kwargs` (extra request fields).
    """

    def __init__(self, client: Any, sampling: Mapping[str, Any]) -> None:
        """Keep the client; no request is made here."""
        self.client = client
        self.sampling = dict(sampling)

    @classmethod
    def from_trainer(cls, trainer: Any) -> VLLMServerGenerator:
        """The trainer's own client on the main process; a client of the same server on the others.

        Raises:
            ConfigError: vLLM runs in colocate mode (multi-turn rollouts here use a server).
            DependencyNotInstalled: vllm (needed by TRL's client) is missing.
        """
        args = trainer.args
        if args.vllm_mode != "server":
            raise ConfigError(
                f"vllm_mode={args.vllm_mode!r}: multi-turn rollouts use a vLLM server on its own GPU; set "
                "vllm_mode=server and start it with train/launch.sh, or set use_vllm=false"
            )
        client = getattr(getattr(trainer, "vllm_generation", None), "vllm_client", None)
        if client is None:  # not the main process: a plain HTTP client, no weight-sync communicator
            try:
                from trl.generation.vllm_client import VLLMClient
            except ImportError as exc:
                raise DependencyNotInstalled(f"vLLM generation needs trl and vllm; run: {INSTALL_VLLM}") from exc
            base_url = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
            client = VLLMClient(base_url=base_url, connection_timeout=args.vllm_server_timeout)
        sampling = {
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,
            "min_p": 0.0 if args.min_p is None else args.min_p,
            "repetition_penalty": args.repetition_penalty,
            "generation_kwargs": getattr(args, "generation_kwargs", None) or {},
        }
        return cls(client, sampling)

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to hold: the server has the weights the trainer pushed before this rollout call."""
        return contextlib.nullcontext()

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[GeneratedTurn]:
        """One `/v1/completions` request for every context; logprobs of the sampled tokens come back with them."""
        output = self.client.generate(
            prompts=[list(context) for context in contexts],
            n=1,
            max_tokens=max_new_tokens,
            logprobs=0,  # only the sampled token's logprob
            **self.sampling,
        )
        turns = []
        for token_ids, logprobs in zip(output["completion_ids"], output["logprobs"], strict=True):
            sampled = tuple(float(position[0]) if position[0] is not None else float("nan") for position in logprobs)
            turns.append(GeneratedTurn(tuple(int(token) for token in token_ids), sampled))
        return turns


def select_generator(trainer: Any) -> Generator:
    """Generate with the trainer's vLLM server when it uses vLLM, else with the trainer's own model."""
    if getattr(trainer.args, "use_vllm", False):
        return VLLMServerGenerator.from_trainer(trainer)
    return TransformersGenerator(trainer)
