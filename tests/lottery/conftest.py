"""Puts this directory on sys.path, so the tests import `lottery_cfg` (the tiny run config)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
