"""`fake_runs` (hand-written run directories, tests/bench/fake_runs.py) is importable from the report tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
