"""`python -m hud_vf_gym.integrations.art`: see `hud_vf_gym.integrations.art.cli`."""

import sys

from hud_vf_gym.integrations.art.cli import main

sys.exit(main())
