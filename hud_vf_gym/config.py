"""The environment YAML: a validated schema, built-in configs by short name, and one clear error for bad input.

A config says what the model is told (`system_prompt`), how its actions become MCP tool calls
(`action_mappings`), how turns are scored (`parser`, `rubric`), and how long things may take. The two configs HUD
published (2048 and computer use) load unchanged; everything is checked when the file loads, and every problem is
reported at once with its key path:

    configs/2048.yaml: 2 problems
      action_mappings.left._tool: Input should be a valid string [input: 5]
      rubric.weights.task_complete: unknown key; expected one of format_compliance, screenshot_behavior, ...
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from hud_vf_gym.core.transforms import Transform, TransformError, compile_transform
from hud_vf_gym.environments.registry import builtin_config_files, shipped_config_dirs
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.validation import count_header, validation_problems

__all__ = [
    "ActionMapping",
    "ArgumentSpec",
    "EnvConfig",
    "ImagesConfig",
    "RubricWeights",
    "SessionsConfig",
    "builtin_config_names",
    "load_config",
    "resolve_config_path",
]

LIFECYCLE_TOOLS = frozenset({"setup", "evaluate"})  # run by the environment, never by the agent
DEFAULT_CONNECT_TIMEOUT_S = 30.0  # start + initialise + list_tools; a cold docker image may need most of it
DEFAULT_TOOL_CALL_TIMEOUT_S = 60.0  # one tool call; a browser action with page loads stays well under this
DEFAULT_ROLLOUT_TIMEOUT_S = 1800.0  # a whole episode, model time included; a hung rollout must not stall a batch
# A reused server restarts after this many rollouts: bounds what a slow leak in a server (memory, open pages) costs.
DEFAULT_SESSION_MAX_USES = 100
# A pooled session idle this long is closed instead of reused: a remote session may have expired server-side, and a
# paused run should not hold servers forever.
DEFAULT_SESSION_IDLE_TIMEOUT_S = 300.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobConfig(BaseModel):
    """The `job` section: a name and free-form metadata for experiment tracking (never sent to a server)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(default="hud-vf-gym", description="A name for runs made with this config.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata.")
    dataset_link: str | None = Field(default=None, description="The taskset this config was written for.")


class Defaults(_Strict):
    """The `defaults` section: environment defaults a keyword argument can override."""

    max_turns: int = Field(default=30, gt=0, description="Model turns before the episode is truncated.")


class ParserConfig(_Strict):
    """The `parser` section: the turn format and how the format reward splits between tags and actions."""

    use_thinking: bool = Field(default=True, description="Ask for <think> before each <tool>.")
    xml_weight: float = Field(default=0.6, ge=0, description="Share of format_compliance for the tags.")
    action_weight: float = Field(default=0.4, ge=0, description="Share of format_compliance for a valid action.")

    @model_validator(mode="after")
    def _weights_not_both_zero(self) -> ParserConfig:
        if self.xml_weight + self.action_weight <= 0:
            raise ValueError("xml_weight and action_weight are both 0; give at least one a positive weight")
        return self


class RubricWeights(_Strict):
    """Weights of the five rubric components; each is also reported as a metric whatever its weight."""

    task_completion: float = Field(default=0.8, description="The task's grade from the evaluate tool.")
    tool_execution: float = Field(default=0.1, description="Successful tool calls / attempted tool calls.")
    format_compliance: float = Field(default=0.1, description="Tag format and valid actions, per turn.")
    screenshot_behavior: float = Field(default=0.0, description="The first action is a screenshot.")
    thinking_quality: float = Field(default=0.0, description="Thinking present, within bounds, not repeated.")


class ThinkingBounds(_Strict):
    """How `thinking_quality` judges a `<think>` block (see `rubric.thinking_quality`)."""

    min_chars: int = Field(default=10, ge=0, description="Shorter thinking does not count as within bounds.")
    max_chars: int = Field(default=1500, gt=0, description="Longer thinking does not count as within bounds.")
    max_similarity: float = Field(
        default=0.9, ge=0, le=1, description="Similarity to the previous turn's thinking above this counts as a copy."
    )


class RubricConfig(_Strict):
    """The `rubric` section."""

    weights: RubricWeights = Field(default_factory=RubricWeights)
    thinking: ThinkingBounds = Field(default_factory=ThinkingBounds)
    score_failed_evaluations: bool = Field(
        default=False,
        description="Score a rollout whose evaluation failed (isError, no grade) with task_completion 0 and train on "
        "it; by default it is an EvaluationError, kept out of training and of the means.",
    )


class Timeouts(_Strict):
    """The `timeouts` section, in seconds. None of them waits forever (HUD's 600 s init wait is not a default)."""

    connect_s: float = Field(default=DEFAULT_CONNECT_TIMEOUT_S, gt=0, description="Start, initialise, list tools.")
    tool_call_s: float = Field(default=DEFAULT_TOOL_CALL_TIMEOUT_S, gt=0, description="One tool call.")
    rollout_s: float = Field(default=DEFAULT_ROLLOUT_TIMEOUT_S, gt=0, description="One whole episode.")


class SessionsConfig(_Strict):
    """The `sessions` section: whether a rollout gets a fresh MCP server or a warm one from a pool.

    With `reuse: per_slot` a finished rollout's session goes back to a pool keyed by its resolved `mcp_config`; the
    next rollout of the same config checks it out exclusively and its setup call resets the server. A session that
    erred, timed out or whose server died is discarded. Reuse needs every server's setup to reset all state: the
    server says so on its setup tool (`_meta: {"hud_vf_gym/setup_resets_state": true}`, as the built-in servers
    do), or `setup_resets_state: true` says it for a server you cannot change. `per_slot` refuses a task or server
    that cannot promise the reset; `auto` (the built-in configs) reuses where it can and starts a fresh server
    per rollout elsewhere.
    """

    reuse: Literal[False, "auto", "per_slot"] = Field(
        default=False,
        description="false: a fresh server per rollout; per_slot: a warm server per concurrent rollout, refusing "
        "servers that do not declare a resetting setup; auto: per_slot where the server declares it, else false.",
    )
    max_uses: int = Field(default=DEFAULT_SESSION_MAX_USES, gt=0, description="Rollouts per server before a restart.")
    idle_timeout_s: float = Field(
        default=DEFAULT_SESSION_IDLE_TIMEOUT_S, gt=0, description="Close a pooled session unused this long."
    )
    pool_size: int | None = Field(
        default=None, gt=0, description="Most idle sessions kept (default: the most rollouts seen at once)."
    )
    setup_resets_state: bool = Field(
        default=False, description="Trust that setup resets every server, even where a server does not declare it."
    )


_UNSET: Any = object()


class ImagesConfig(_Strict):
    """The `images` section: how screenshots reach the model (applied in `hud_vf_gym.core.images`)."""

    keep_recent: int | None = Field(
        default=3,
        ge=0,
        description="Screenshots kept as images in the message history, the newest ones; each older one becomes "
        "the text '[screenshot from turn N omitted]'. null keeps every screenshot.",
    )
    max_width: int | None = Field(
        default=None,
        gt=0,
        description="Downscale screenshots wider than this many pixels (aspect ratio kept). The model then sees a "
        "smaller screen: the coordinate arguments of its next action are scaled back to screen pixels.",
    )
    jpeg_quality: int | None = Field(
        default=None, ge=1, le=100, description="Re-encode screenshots as JPEG at this quality (null: as sent)."
    )
    coordinate_arguments: list[str] = Field(
        default_factory=lambda: ["x", "y", "path", "offset_x", "offset_y"],
        description="MCP arguments holding screen pixels (numbers, [x, y] pairs or {x, y} points), scaled back "
        "when max_width downscaled the screenshot the model acted on.",
    )


class ArgumentSpec(_Strict):
    """How one MCP argument gets its value. Exactly one of `static`, `from_arg` or `from_args` is set.

    A plain scalar or list in the YAML (`action: click`) is shorthand for `static`.
    """

    static: Any = Field(default=_UNSET, description="A constant value.")
    from_arg: str | None = Field(default=None, description="The agent's argument to read.")
    from_args: list[str] | None = Field(default=None, description="Several agent arguments, sent as a list.")
    default: Any = Field(
        default=_UNSET, description="MCP value used when the agent omits the argument (not transformed)."
    )
    defaults: list[Any] | None = Field(default=None, description="Per-item defaults for from_args.")
    transform: str | list[str] | None = Field(
        default=None, description="A named transform, a list of names or a lambda."
    )
    use_context: bool = Field(default=False, description="The lambda also receives every argument of the call by name.")
    optional: bool = Field(default=False, description="Leave the argument out when the agent omits it (no default).")

    _compiled_transform: Transform | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand_static(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return value
        return {"static": value}

    @field_validator("transform")
    @classmethod
    def _transform_compiles(cls, spec: str | list[str] | None) -> str | list[str] | None:
        # compiled here so a bad transform is reported at its own key; `_check_sources` keeps the compiled form
        if spec is not None:
            try:
                compile_transform(spec)
            except TransformError as exc:
                raise ValueError(str(exc)) from exc
        return spec

    @model_validator(mode="after")
    def _check_sources(self) -> ArgumentSpec:
        sources = [name for name in ("static", "from_arg", "from_args") if self._is_set(name)]
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            raise ValueError(f"set exactly one of static, from_arg, from_args (found: {found})")
        if self.transform is not None:
            compiled = compile_transform(self.transform)  # cannot fail: `_transform_compiles` accepted it
            if self.use_context and not compiled.wants_context:
                raise ValueError("use_context is true, so the transform must take two parameters: 'lambda x, ctx: ...'")
            self._compiled_transform = compiled
        if self.defaults is not None and (self.from_args is None or len(self.defaults) != len(self.from_args)):
            raise ValueError("defaults must be a list with one entry per name in from_args")
        return self

    def _is_set(self, name: str) -> bool:
        value = getattr(self, name)
        if name == "static":
            return value is not _UNSET  # `static: null` is a legitimate constant
        return value is not None

    @property
    def compiled_transform(self) -> Transform | None:
        """The transform, compiled when the config loaded (None when there is none)."""
        return self._compiled_transform

    @property
    def has_default(self) -> bool:
        """Whether the mapping gives a value for an omitted agent argument."""
        return self.default is not _UNSET

    @property
    def has_static(self) -> bool:
        """Whether the argument is a constant."""
        return self.static is not _UNSET


class ParserHints(_Strict):
    """The `_parser` key of an action mapping."""

    positional: list[str] = Field(default_factory=list, description="Names given to positional arguments, in order.")


class ActionMapping(BaseModel):
    """One agent action: which MCP tool it calls (`_tool`) and how each MCP argument is built.

    Keys starting with `_` configure the action; every other key is an MCP argument name mapped to an
    `ArgumentSpec` (or a constant).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    tool: str | None = Field(
        default=None, alias="_tool", description="The MCP tool to call; defaults to the action name."
    )
    parser: ParserHints = Field(default_factory=ParserHints, alias="_parser")
    description: str | None = Field(default=None, alias="_description", description="Shown in generated prompts.")
    mcp_arguments: dict[str, ArgumentSpec] = Field(default_factory=dict, description="MCP argument -> its source.")

    @model_validator(mode="before")
    @classmethod
    def _split_arguments(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        options = {key: item for key, item in value.items() if str(key).startswith("_")}
        arguments = {str(key): item for key, item in value.items() if not str(key).startswith("_")}
        return {**options, "mcp_arguments": arguments}

    @property
    def referenced_agent_arguments(self) -> set[str]:
        """The agent argument names this mapping reads (from_arg / from_args) or names positionally."""
        names = set(self.parser.positional)
        for spec in self.mcp_arguments.values():
            if spec.from_arg:
                names.add(spec.from_arg)
            names.update(spec.from_args or [])
        return names


class EnvConfig(_Strict):
    """A whole environment config, as loaded from YAML (see the README for every key)."""

    job: JobConfig = Field(default_factory=JobConfig)
    system_prompt: str = Field(min_length=1, description="What the model is told about its actions and the format.")
    defaults: Defaults = Field(default_factory=Defaults)
    parser: ParserConfig = Field(default_factory=ParserConfig)
    action_mappings: dict[str, ActionMapping] = Field(description="Agent action name -> MCP call.")
    passthrough_tools: list[str] | Literal["*"] = Field(
        default_factory=list,
        description="MCP tools the agent may call directly by name (keyword arguments), or '*' for all of them. "
        "The lifecycle tools setup and evaluate are never reachable.",
    )
    rubric: RubricConfig = Field(default_factory=RubricConfig)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    tool_error_pattern: str = Field(
        default=r"^\s*ERROR:",
        description="A tool result whose text matches this regex counts as a failed call, even without isError.",
    )
    logging: dict[str, Any] = Field(default_factory=dict, description="Accepted for compatibility; unused.")

    @field_validator("tool_error_pattern")
    @classmethod
    def _valid_regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern

    @field_validator("action_mappings")
    @classmethod
    def _at_least_one_action(cls, mappings: dict[str, ActionMapping]) -> dict[str, ActionMapping]:
        if not mappings:
            raise ValueError(
                "no actions are mapped; add at least one, e.g. 'left: {_tool: move, direction: left}' "
                "(done() needs no mapping)"
            )
        return mappings

    @field_validator("passthrough_tools")
    @classmethod
    def _no_lifecycle_passthrough(cls, tools: list[str] | str) -> list[str] | str:
        blocked = sorted(LIFECYCLE_TOOLS.intersection(tools if isinstance(tools, list) else []))
        if blocked:
            names = " and ".join(repr(name) for name in blocked)
            verb, pronoun = ("runs", "it") if len(blocked) == 1 else ("run", "them")
            raise ValueError(f"{names} only {verb} as the task's setup/evaluate; remove {pronoun} from this list")
        return tools

    @model_validator(mode="after")
    def _check_actions(self) -> EnvConfig:
        problems = []
        for name, mapping in self.action_mappings.items():
            if name == "done":
                continue
            tool = mapping.tool or name
            if tool in LIFECYCLE_TOOLS:
                problems.append(f"action_mappings.{name}._tool: {tool!r} is a lifecycle tool the agent may not call")
            if not _IDENTIFIER.fullmatch(name):
                problems.append(f"action_mappings.{name}: action names must be identifiers like click or move_left")
        weights = self.rubric.weights
        if weights.screenshot_behavior > 0 and "screenshot" not in self.action_mappings:
            problems.append(
                f"rubric.weights.screenshot_behavior: is {weights.screenshot_behavior} but action_mappings has no "
                "'screenshot' action; add one or set the weight to 0"
            )
        if problems:
            # one problem per line, each with its own key path (see `_format_validation_error`)
            raise ValueError("\n".join(problems))
        return self

    @property
    def max_turns(self) -> int:
        """Model turns before truncation (`defaults.max_turns`)."""
        return self.defaults.max_turns


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _builtin_dirs() -> list[Path]:
    """The folders of shipped configs: `configs/` in a checkout, `hud_vf_gym/_configs` in a wheel."""
    return shipped_config_dirs()


def builtin_config_names() -> list[str]:
    """Names of the built-in configs: those shipped ("2048", "default", ...) and those table rows name by path."""
    names = {path.stem for directory in _builtin_dirs() for path in directory.glob("*.yaml")}
    return sorted(names | set(builtin_config_files()))


def resolve_config_path(config_path: str | Path) -> Path:
    """Turn a file path or a built-in short name (shipped, or a table row's file) into the YAML file to read."""
    path = Path(config_path).expanduser()
    if path.is_file():
        return path
    name = str(config_path).removesuffix(".yaml").removesuffix(".yml")
    if "/" not in name:
        for directory in _builtin_dirs():
            candidate = directory / f"{name}.yaml"
            if candidate.is_file():
                return candidate
        row_file = builtin_config_files().get(name)  # an environment registered with its own config file
        if row_file is not None:
            return row_file
    names = builtin_config_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"config {str(config_path)!r} is neither a YAML file nor a built-in config; "
        f"built-in configs: {', '.join(names)}{hint}"
    )


def load_config(
    config_path: str | Path = "2048",
    *,
    max_turns: int | None = None,
    system_prompt: str | None = None,
    session_reuse: Any = None,
) -> EnvConfig:
    """Load and validate a config from a YAML file or a built-in name; raise `ConfigError` naming every problem.

    Args:
        config_path: a path to a YAML file, or the short name of a built-in config ("2048", "default").
        max_turns: replaces `defaults.max_turns` when given.
        system_prompt: replaces `system_prompt` when given.
        session_reuse: replaces `sessions.reuse` when given (False, "auto" or "per_slot"; validated like the YAML).
    """
    path = resolve_config_path(config_path)
    raw = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{path}: expected a mapping of sections (system_prompt, action_mappings, ...), found {type(raw).__name__}"
        )
    merged = dict(raw)
    if system_prompt is not None:
        merged["system_prompt"] = system_prompt
    if max_turns is not None:
        merged["defaults"] = _with_key(merged.get("defaults"), "max_turns", max_turns)
    if session_reuse is not None:
        merged["sessions"] = _with_key(merged.get("sessions"), "reuse", session_reuse)
    return parse_config(merged, source=str(path))


# A config is a few kilobytes; a bigger file is a mistake (a dataset or a log passed as --config).
MAX_CONFIG_BYTES = 1_000_000


def _read_yaml(path: Path) -> Any:
    """The YAML document in `path`; every way reading it can fail is a `ConfigError` naming the file and the fix."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {path.stat().st_size} bytes, but a config is a small YAML file (at most {MAX_CONFIG_BYTES} "
                "bytes); check that --config names the environment config"
            )
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read; a config nests a few levels, not thousands") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar YAML resolves but cannot build (`2001-13-45`)
        raise ConfigError(f"{path}: a value cannot be read as YAML: {exc}; quote it to keep it a string") from exc


def _with_key(section: Any, key: str, value: Any) -> dict[str, Any]:
    """A copy of a config section (or a new one, where it is missing or not a mapping) with `key` set."""
    return {**(section if isinstance(section, Mapping) else {}), key: value}


def parse_config(raw: Mapping[str, Any], *, source: str = "<config>") -> EnvConfig:
    """Validate an already-loaded config mapping; `source` names it in error messages."""
    try:
        return EnvConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = validation_problems(exc, EnvConfig, hidden=("mcp_arguments",))
        raise ConfigError(count_header(source, problems)) from None
    except RecursionError:  # a value nested thousands deep (a mapping built in code, or YAML read elsewhere)
        raise ConfigError(f"{source}: nested too deeply to validate; a config nests a few levels") from None
