"""The `hud-vf-gym` command and its subcommands (eval, init, dataset, train)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hud-vf-gym`; the parser and each subcommand's modules load only when they are used."""
    from hud_vf_gym.cli.app import main as run_app

    return run_app(argv)
