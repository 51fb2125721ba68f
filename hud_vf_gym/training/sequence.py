r"""How a multi-turn episode becomes the one token sequence GRPO trains on: prompt ids, completion ids, env_mask.

TRL's `rollout_func` returns, per rollout, the prompt's token ids and one *completion* that holds every turn after
the prompt, model and environment alike, with `env_mask` marking which tokens the model produced (1: trained)
and which the environment wrote (0: never trained). This module builds that sequence from the tokenizer's chat
template. The rule, exactly:

1. **Prompt**: the chat template applied to the episode's first messages (system prompt, task prompt with the
   setup output) with the generation prompt, tokenised as text (`add_special_tokens=False`, so a BOS the template
   writes is not doubled).
2. **Model turn** (mask 1): the token ids the model sampled, as the generation backend returned them, never
   re-tokenised; cut after the first stop token (EOS) and at the turn's token cap.
3. **Environment turn** (mask 0): everything the chat template writes between the end of the model's message and
   the start of its next one. It is found by rendering a fixed two-message conversation with a sentinel as the
   assistant's content, with and without the observation as the next user message (generation prompt included):

       before = render([user("..."), assistant(SENTINEL)])
       after  = render([user("..."), assistant(SENTINEL), user(observation)], add_generation_prompt=True)
       wrapper = after[after.index(SENTINEL) + len(SENTINEL):]

   For ChatML that is `<|im_end|>\n<|im_start|>user\n{observation}<|im_end|>\n<|im_start|>assistant\n`. When the
   model's turn already ended with the end-of-turn token the wrapper starts with, that token is the model's (mask
   1) and is left out of the environment's text. The environment text is tokenised on its own; every template we
   know puts a special token on both sides of it, so its tokens are the ones the whole conversation would have.
4. **End**: a row whose last token is not a stop token gets the EOS appended (mask 0), so TRL never counts it as
   truncated; the model did not write that token, so it is not trained.

Rendering a fixed conversation, not the real history, keeps the wrapper independent of templates that rewrite
earlier turns (Qwen3 drops old `<think>` blocks), and is what TRL does for tool results (`_get_tool_suffix_ids`).
Screenshots are not part of the sequence: the models trained here read text only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hud_vf_gym.errors import ConfigError

__all__ = ["ChatFormat", "ChatTokenizer", "TokenLimits"]

SENTINEL = "\x00hud-vf-gym-assistant\x00"  # assistant content no chat template rewrites or tokenises specially
PLACEHOLDER_USER = "..."  # the user message before the sentinel turn; its rendering is cut off and never used
MIN_TURN_TOKENS = 8  # a model turn shorter than this cannot hold a tool call: the episode stops instead


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the rollout uses."""

    eos_token_id: int | None
    pad_token_id: int | None

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        """Render messages with the chat template."""

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        """Tokenise text."""

    def decode(self, token_ids: Any, **kwargs: Any) -> str:
        """Turn token ids back into text."""


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """How many completion tokens a rollout may use.

    Attributes:
        turn_tokens: new tokens the model may write in one turn (a longer reply is cut and parsed as it is).
        episode_tokens: tokens of the whole completion (model, environment and the closing EOS together); the
            episode stops, truncated, when the next turn or observation would not fit.
    """

    turn_tokens: int = 64
    episode_tokens: int = 512

    @property
    def min_turn_tokens(self) -> int:
        """The room a next turn needs; with less, the episode stops (truncated) instead."""
        return min(MIN_TURN_TOKENS, self.turn_tokens)

    def __post_init__(self) -> None:
        """Refuse limits that leave no room for a turn."""
        if self.turn_tokens < 1:
            raise ConfigError(f"TokenLimits.turn_tokens must be at least 1, got {self.turn_tokens}")
        if self.episode_tokens < self.turn_tokens + 1:
            raise ConfigError(
                f"TokenLimits.episode_tokens ({self.episode_tokens}) must be larger than turn_tokens "
                f"({self.turn_tokens}): an episode needs room for one turn and its closing EOS; raise "
                "max_completion_length or lower max_turn_tokens"
            )


class ChatFormat:
    """Token ids for the prompt and the environment's turns, from a tokenizer's chat template (see module docs).

    Args:
        tokenizer: the trained model's tokenizer, with a chat template.
        chat_template: a template to use instead of the tokenizer's (TRL may swap one in for training).
        chat_template_kwargs: extra template variables, e.g. `{"enable_thinking": False}`.
        stop_token_ids: tokens that end a model turn besides the tokenizer's EOS (a generation config's list).

    Raises:
        ConfigError: the tokenizer has no EOS token, or its template does not render the sentinel conversation
            as a prefix of the longer one (the mask rule cannot be applied).
    """

    def __init__(
        self,
        tokenizer: ChatTokenizer,
        *,
        chat_template: str | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        stop_token_ids: Iterable[int] = (),
    ) -> None:
        """Read the template's end-of-turn text once; no model is involved."""
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no eos_token_id; multi-turn rollouts need one to end each row")
        self.tokenizer = tokenizer
        self.eos_token_id: int = tokenizer.eos_token_id
        self.stop_token_ids = frozenset({self.eos_token_id, *stop_token_ids})
        self._template_kwargs: dict[str, Any] = dict(chat_template_kwargs or {})
        if chat_template is not None:
            self._template_kwargs["chat_template"] = chat_template
        self._eos_text = tokenizer.decode([self.eos_token_id], skip_special_tokens=False)

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool) -> str:
        """The chat template's text for `messages`."""
        text = self.tokenizer.apply_chat_template(
            [dict(message) for message in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **self._template_kwargs,
        )
        if not isinstance(text, str):
            raise ConfigError(f"the chat template rendered {type(text).__name__}, expected text")
        return text

    def encode(self, text: str) -> list[int]:
        """Tokenise template text without adding special tokens (the template wrote the ones it wants)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        """The text of a model turn as the parser sees it (special tokens dropped)."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Rule 1: the first messages with the generation prompt, as token ids."""
        return self.encode(self.render(messages, add_generation_prompt=True))

    def environment_text(self, observation: str, *, model_closed_turn: bool) -> str:
        """Rule 3: the text between the model's turn and its next one, observation included."""
        before = self.render(_sentinel_conversation(), add_generation_prompt=False)
        after = self.render(
            [*_sentinel_conversation(), {"role": "user", "content": observation}], add_generation_prompt=True
        )
        if not after.startswith(before) or SENTINEL not in before:
            raise ConfigError(
                "the chat template does not render a conversation as a prefix of the same conversation with one "
                "more user message, so environment tokens cannot be told apart from model tokens; use a model "
                "whose template appends messages (ChatML, Llama 3, ...) or pass a chat_template that does"
            )
        wrapper = after[after.index(SENTINEL) + len(SENTINEL) :]
        if model_closed_turn and wrapper.startswith(self._eos_text):
            wrapper = wrapper[len(self._eos_text) :]
        return wrapper

    def environment_ids(self, observation: str, *, model_closed_turn: bool) -> list[int]:
        """Rule 3 as token ids (all of them masked out of the loss)."""
        return self.encode(self.environment_text(observation, model_closed_turn=model_closed_turn))

    def model_turn(self, token_ids: Sequence[int], max_tokens: int) -> list[int]:
        """Rule 2: a generated turn cut at the token cap and after its first stop token."""
        kept = list(token_ids[:max_tokens])
        for index, token in enumerate(kept):
            if token in self.stop_token_ids:
                return kept[: index + 1]
        return kept

    def ends_turn(self, token_ids: Sequence[int]) -> bool:
        """Whether a sequence ends with a stop token (TRL's test for "not truncated")."""
        return bool(token_ids) and token_ids[-1] in self.stop_token_ids


def _sentinel_conversation() -> list[dict[str, str]]:
    return [{"role": "user", "content": PLACEHOLDER_USER}, {"role": "assistant", "content": SENTINEL}]
