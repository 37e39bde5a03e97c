"""One bench run in its own process: `python -m prunekit.bench.worker RUN_DIR new|resume`.

A new run reads its resolved config as JSON on stdin (the run directory does not exist yet: the Trainer writes
config.yaml once the run is known to start); a resumed run uses the config.yaml it saved. One torch thread.
"""

from __future__ import annotations

import json
import sys

from prunekit.errors import UserError


def main(argv: list[str]) -> int:
    import torch

    from prunekit.config import RunConfig, build_dataclass
    from prunekit.train.trainer import Trainer

    if len(argv) != 2 or argv[1] not in ("new", "resume"):
        print("usage: python -m prunekit.bench.worker RUN_DIR new|resume", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    run_dir, state = argv
    try:
        if state == "resume":
            Trainer.resume(run_dir).fit()
        else:
            cfg = build_dataclass(RunConfig, json.loads(sys.stdin.read()))
            Trainer(cfg, run_dir).fit()
    except UserError as exc:
        print(f"prunekit: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
