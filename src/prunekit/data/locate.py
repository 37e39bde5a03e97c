"""Default data locations: env PRUNEKIT_DATA, ./data, ../shared/data, searched for each source's usual
file and directory names."""

from __future__ import annotations

import os
from pathlib import Path

from prunekit.errors import UserError

# source name -> file or directory names to look for inside each data root, in order of preference
CANDIDATE_NAMES: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar10", "cifar10-jpeg.tar.gz"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", "cifar100"),
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
}


def data_roots() -> list[tuple[str, Path | None]]:
    """(label, directory) of each place searched, in order; the env entry's directory is None when unset."""
    env = os.environ.get("PRUNEKIT_DATA")
    return [
        ("$PRUNEKIT_DATA", Path(env).expanduser() if env else None),
        ("./data", Path.cwd() / "data"),
        ("../shared/data", Path.cwd().parent / "shared" / "data"),
    ]


def find_data(name: str) -> Path:
    """The first existing candidate for source `name`; a one-line UserError listing every place searched."""
    names = CANDIDATE_NAMES[name]
    looked = []
    for label, root in data_roots():
        if root is None:
            looked.append(f"{label} (unset)")
            continue
        for candidate in names:
            if (root / candidate).exists():
                return root / candidate
        looked.append(f"{root}")
    raise UserError(f"{name} data not found: looked for {' / '.join(names)} in {', '.join(looked)}; "
                    f"set data.path, or data.download: true to fetch it")
