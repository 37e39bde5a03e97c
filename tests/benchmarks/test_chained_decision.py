"""benchmarks/chained_decision.py on a tiny REPrune run over a plain conv chain (small_cnn): the replay reports
every group, and a group whose filters read no other group's channels (the first conv) is decided the same
under both input rules."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from prunekit.config import load_config
from prunekit.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "chained_decision.py"


def test_replay_of_a_chain(tmp_path):
    config = {"name": "chain", "data": {"name": "synthetic", "synthetic_size": 96, "synthetic_shape": [3, 16, 16]},
              "model": {"name": "small_cnn", "kwargs": {"widths": [16, 16, 16]}},
              "train": {"epochs": 2, "batch_size": 32, "threads": 1, "seed": 0},
              "method": {"name": "reprune", "params": {"sparsity": 0.5, "t_prune": 2, "interval": 1,
                                                         "policy": "all"}}}
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump(config))
    Trainer(load_config(tmp_path / "chain.yaml"), tmp_path / "run", quiet=True).fit()
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "run"), "--t", "1", "--from-full"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    groups = result["kept_and_differing"]
    assert result["t"] == 1 and result["groups"] == len(groups) >= 2
    first = next(iter(groups))
    assert groups[first][1] == 0  # the first conv reads the image: the same inputs under both rules
    assert all(0 <= differ <= kept <= 16 for kept, differ in groups.values())
    assert result["groups_changed"] == sum(1 for _, differ in groups.values() if differ)
