"""The verifiers classic (0.3.x) API, bridged for HUDGym: the parser, the rubric and the infrastructure errors.

The core (harness, rubric scoring, runtime, Gym env, trainer, CLI) imports no verifiers; this module and `env.py`
(HUDGym, `load_environment`) are the only ones that import the classic API, which verifiers 0.4 removed.

- `ToolXMLParser`: the core's `TurnParser` that is also a verifiers `XMLParser` (`parse`, `parse_answer`, and a
  `get_format_reward_func` scored like the rubric's tag score).
- `HUDRubric`: the core's five components and count metrics (`core.rubric`) as a verifiers `Rubric`.
- `classic_errors()`: turns one of our errors escaping a HUDGym hook into the same error that is also a verifiers
  error, so verifiers records it in `state["error"]` and keeps the rollout out of training: an infrastructure error
  (`MCPServerError` and its subclasses, `RolloutTimeoutError` included, and `InferenceError`) becomes a verifiers
  `InfraError` (retried where configured); a `TaskDefinitionError` or `EvaluationError` a plain `verifiers.Error`
  (recorded, never retried: the row's mistake or the broken evaluator repeats on every attempt). Each bridged class
  keeps its name (`ServerConnectionError`), so result rows read as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from hud_vf_gym import errors

try:
    import verifiers as vf

    # bound once: every `vf.X` access runs verifiers' lazy __getattr__; verifiers 0.4 has neither
    from verifiers import MultiTurnEnv, SystemMessage, UserMessage
except ImportError as exc:  # no verifiers, or verifiers 0.4 (v1 only)
    raise errors.DependencyNotInstalled(
        "HUDGym needs verifiers' classic API (verifiers 0.3.x): pip install 'hud-vf-gym[classic]'. "
        "With verifiers 0.4 use the v1 taskset instead: vf-eval hud_vf_gym.v1 (pip install 'hud-vf-gym[v1]')"
    ) from exc
from hud_vf_gym.config import ParserConfig, RubricConfig
from hud_vf_gym.core.parser import TurnParser, assistant_texts
from hud_vf_gym.core.rubric import COMPONENTS, METRICS

E = TypeVar("E", bound=BaseException)

__all__ = [
    "HUDRubric",
    "MultiTurnEnv",
    "SystemMessage",
    "ToolXMLParser",
    "UserMessage",
    "as_infra_error",
    "as_verifiers_error",
    "classic_errors",
    "vf",
]


class ToolXMLParser(TurnParser, vf.XMLParser):  # type: ignore[misc]  # verifiers ships no type information
    """Parses `<think>`/`<tool>` turns into calls; a verifiers `XMLParser` with the same `parse`/`parse_answer`.

    Args:
        use_thinking: whether the model is asked to think in `<think>` before each `<tool>`.
    """

    def __init__(self, use_thinking: bool = True) -> None:
        """Set up the fields `think` (when thinking) and `tool`; `tool` is the answer field."""
        _quiet_think_warning(type(self))  # before XMLParser.__init__, which logs it
        vf.XMLParser.__init__(self, fields=["think", "tool"] if use_thinking else ["tool"], answer_field="tool")
        TurnParser.__init__(self, use_thinking)

    def get_format_reward_func(self) -> Callable[..., float]:
        """Return a reward function scoring the mean tag format of every assistant message in a completion."""

        def format_reward_func(completion: vf.Messages, **kwargs: Any) -> float:
            scores = [self.parse_turn(text).xml_score for text in assistant_texts(completion)]
            return sum(scores) / len(scores) if scores else 0.0

        return format_reward_func


class _InapplicableThinkWarning(logging.Filter):
    """Drops verifiers' XMLParser warning about a 'think' field, and nothing else, on ToolXMLParser's own logger.

    verifiers warns whenever an XMLParser declares `think`, because *its* `parse` fails on a model that leaves the
    tags out or whose chat template strips them. This parser reads turns with the core's tolerant `parse_turn`: a
    missing or unclosed `<think>` is scored by format_compliance, never a parsing failure, so the warning does
    not apply. Every other record of the logger passes, and other XMLParsers still warn.
    """

    PREFIX = "You have included the 'think' field in the XMLParser"

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record except the inapplicable warning."""
        return not record.getMessage().startswith(self.PREFIX)


_THINK_WARNING_FILTER = _InapplicableThinkWarning()


def _quiet_think_warning(parser_class: type) -> None:
    """Attach the filter to the logger verifiers' `Parser.__init__` names after the class (once per class)."""
    logger = logging.getLogger(f"{vf.Parser.__module__}.{parser_class.__name__}")
    if _THINK_WARNING_FILTER not in logger.filters:
        logger.addFilter(_THINK_WARNING_FILTER)


class HUDRubric(vf.Rubric):  # type: ignore[misc]  # verifiers ships no type information
    """The five weighted components plus count metrics, configured from a config's `rubric` and `parser` sections.

    Args:
        rubric_config: weights and thinking bounds.
        parser_config: the xml/action split of format_compliance.
        parser: the turn parser (verifiers passes it to reward functions as `parser`).
    """

    def __init__(self, rubric_config: RubricConfig, parser_config: ParserConfig, parser: TurnParser) -> None:
        """Register every component with its weight and every count as a zero-weight metric."""
        weights = rubric_config.weights.model_dump()
        super().__init__(
            funcs=list(COMPONENTS.values()),
            weights=[weights[name] for name in COMPONENTS],
            parser=parser,
        )
        for metric in METRICS:
            self.add_metric(metric)
        # injected by name into the functions that declare these parameters
        self.add_class_object("parser_config", parser_config)
        self.add_class_object("thinking_bounds", rubric_config.thinking)

    @property
    def weights_by_name(self) -> dict[str, Any]:
        """The weight of each component, by name."""
        return dict(zip(COMPONENTS, self.weights, strict=False))


# -- our errors as verifiers errors ----------------------------------------------------------------------------------


class MCPServerError(errors.MCPServerError, vf.InfraError):  # type: ignore[misc]
    """`errors.MCPServerError`, also a verifiers `InfraError`."""


class ServerStartError(errors.ServerStartError, MCPServerError):
    """`errors.ServerStartError`, also a verifiers `InfraError`."""


class ServerTimeoutError(errors.ServerTimeoutError, MCPServerError):
    """`errors.ServerTimeoutError`, also a verifiers `InfraError`."""


class RolloutTimeoutError(errors.RolloutTimeoutError, ServerTimeoutError):
    """`errors.RolloutTimeoutError`, also a verifiers `InfraError`."""


class ServerConnectionError(errors.ServerConnectionError, MCPServerError):
    """`errors.ServerConnectionError`, also a verifiers `InfraError`."""


class TaskSetupError(errors.TaskSetupError, MCPServerError):
    """`errors.TaskSetupError`, also a verifiers `InfraError`."""


class InferenceError(errors.InferenceError, vf.InfraError):  # type: ignore[misc]
    """`errors.InferenceError` (the model endpoint failed), also a verifiers `InfraError`."""


class TaskDefinitionError(errors.TaskDefinitionError, vf.Error):  # type: ignore[misc]
    """`errors.TaskDefinitionError`, also a plain verifiers `Error`: recorded, kept out of training, never retried."""


class EvaluationError(errors.EvaluationError, vf.Error):  # type: ignore[misc]
    """`errors.EvaluationError`, also a plain verifiers `Error`: recorded, kept out of training, never retried."""


# looked up along the error's own MRO, so a subclass without a bridge of its own gets its parent's
_BRIDGES: dict[type[errors.HUDGymError], type[errors.HUDGymError]] = {
    errors.MCPServerError: MCPServerError,
    errors.ServerStartError: ServerStartError,
    errors.ServerTimeoutError: ServerTimeoutError,
    errors.RolloutTimeoutError: RolloutTimeoutError,
    errors.ServerConnectionError: ServerConnectionError,
    errors.TaskSetupError: TaskSetupError,
    errors.InferenceError: InferenceError,
    errors.TaskDefinitionError: TaskDefinitionError,
    errors.EvaluationError: EvaluationError,
}
BRIDGED: tuple[type[errors.HUDGymError], ...] = (
    errors.MCPServerError,
    errors.InferenceError,
    errors.TaskDefinitionError,
    errors.EvaluationError,
)


def as_verifiers_error(exc: E) -> E:
    """The same error as an instance of its bridged class (a verifiers error too), attributes, cause and traceback kept.

    An error that is a verifiers error already, or that has no bridge (a `ConfigError`), comes back as it is.
    """
    if isinstance(exc, vf.Error):  # bridged already
        return exc
    bridge = next((_BRIDGES[cls] for cls in type(exc).__mro__ if cls in _BRIDGES), None)
    if bridge is None:
        return exc
    # without calling __init__: TaskDefinitionError's takes keywords; every attribute is copied as it is
    bridged = bridge.__new__(bridge, *exc.args)
    bridged.args = exc.args
    bridged.__dict__.update(exc.__dict__)
    bridged.__cause__, bridged.__context__ = exc.__cause__, exc.__context__
    bridged.__suppress_context__ = exc.__suppress_context__
    bridged.__traceback__ = exc.__traceback__
    return cast(E, bridged)


def as_infra_error(exc: E) -> E:
    """`as_verifiers_error` for an infrastructure error: the same error, also a verifiers `InfraError`."""
    return as_verifiers_error(exc)


@contextmanager
def classic_errors() -> Iterator[None]:
    """Re-raise one of our errors from the block as `as_verifiers_error(error)`, for verifiers to record."""
    try:
        yield
    except BRIDGED as exc:
        bridged = as_verifiers_error(exc)
        if bridged is exc:
            raise
        raise bridged from exc.__cause__
