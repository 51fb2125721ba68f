"""Run `hud-vf-gym` as `python -m hud_vf_gym.cli`."""

import sys

from hud_vf_gym.cli.app import main

sys.exit(main())
