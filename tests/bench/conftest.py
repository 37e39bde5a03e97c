"""`fake_runs` (hand-written run directories) is importable from the bench and report tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
