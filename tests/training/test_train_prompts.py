"""`hud-vf-gym train` on a terminal (a pseudo-terminal here): it offers `init` and `dataset` for what is missing,
shows the plan and asks before starting; without a terminal it never asks."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import yaml

from hud_vf_gym.config import load_config
from tests.training.train_projects import ENV_NAME, SECRET, clean_environ, cli, write_project

WAIT_S = 180.0  # bound on each wait for the command's next output (it imports the package, then plans)


class Terminal:
    """A command on a pseudo-terminal: `expect` waits for its output, `send` types a line."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True
        )
        os.close(slave)
        self.output = ""
        self.seen = 0  # expect() looks only after what it already matched

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the command closed the terminal
            return False
        self.output += data.decode(errors="replace").replace("\r\n", "\n")
        return bool(data)

    def expect(self, text: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while text not in self.output[self.seen :]:
            if time.monotonic() > deadline or not self._read(0.5):
                raise AssertionError(f"waited for {text!r}; the terminal shows:\n{self.output[-4000:]}")
        self.seen = self.output.index(text, self.seen) + len(text)

    def send(self, line: str) -> None:
        os.write(self.master, f"{line}\n".encode())

    def finish(self) -> int:
        status = self.process.wait(timeout=WAIT_S)
        while self._read(0.2):
            pass
        os.close(self.master)
        return status


def test_terminal_offers_init_and_dataset_then_asks_before_starting(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = write_project(tmp_path / "proj", env_file=f"HUD_API_KEY={SECRET}\n")  # a lock and tasks.json only
    terminal = Terminal(cli("train", "--project", str(project)), clean_environ(home), tmp_path)
    terminal.expect(f"missing: configs/{ENV_NAME}.yaml: no environment config")
    terminal.expect(f"Write configs/{ENV_NAME}.yaml now with `hud-vf-gym init {project}`? [Y/n]")
    terminal.send("y")
    terminal.expect(f"wrote {project / 'configs' / ENV_NAME}.yaml: actions")
    terminal.expect("no primary_dataset; create it with `hud-vf-gym dataset TASKS.json --name NAME`")
    terminal.expect("Tasks file to save as the dataset (- to skip) [tasks.json]:")
    terminal.send("")
    terminal.expect("Dataset name [proj]:")
    terminal.send("")
    terminal.expect("hud.lock.yaml primary_dataset is now proj")
    terminal.expect("hud-vf-gym train: the plan")
    terminal.expect("Start training? [Y/n]")
    terminal.send("n")
    terminal.expect("not started")
    assert terminal.finish() == 0
    shown = " ".join(terminal.output.split())
    assert f"config {project / 'configs' / ENV_NAME}.yaml (configs/{ENV_NAME}.yaml (for hud.lock.yaml's" in shown
    assert f"tasks {project / 'datasets' / 'proj'} (hud.lock.yaml primary_dataset 'proj' (datasets/proj))" in shown
    assert "HUD_API_KEY from .env" in shown and SECRET not in terminal.output
    assert sorted(load_config(project / "configs" / f"{ENV_NAME}.yaml").action_mappings) == ["done", "move"]
    lock = yaml.safe_load((project / "hud.lock.yaml").read_text(encoding="utf-8"))
    assert (lock["primary_dataset"]["name"], lock["primary_dataset"]["local_path"]) == ("proj", "datasets/proj")
    assert not (project / "outputs").exists()  # nothing started


def test_terminal_declined_fixes_end_in_one_message_per_missing_input(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = write_project(tmp_path / "proj", tasks=False)
    terminal = Terminal(cli("train", "--project", str(project)), clean_environ(home), tmp_path)
    terminal.expect("? [Y/n]")
    terminal.send("n")
    terminal.expect("Tasks file to save as the dataset (- to skip) [-]:")
    terminal.send("")
    terminal.expect("hud-vf-gym train: error: 2 missing inputs")
    assert terminal.finish() == 2
    shown = " ".join(terminal.output.split())
    assert f"- configs/{ENV_NAME}.yaml: no environment config for" in shown
    assert f"create it with `hud-vf-gym init {project}` (it reads hud.lock.yaml), or pass --config PATH" in shown
    assert "no primary_dataset; create it with `hud-vf-gym dataset TASKS.json --name NAME`" in shown
    assert not (project / "configs").exists()


def test_without_a_terminal_nothing_is_asked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = write_project(tmp_path / "proj")
    completed = subprocess.run(
        cli("train", "--project", str(project)),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env=clean_environ(home),
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 2
    assert "[Y/n]" not in completed.stdout + completed.stderr
    assert completed.stderr.startswith("hud-vf-gym train: error: 2 missing inputs\n  - configs/")
    assert not (project / "configs").exists()
