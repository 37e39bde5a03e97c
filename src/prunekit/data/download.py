"""Fetching CIFAR-10/100 and MNIST/Fashion-MNIST from their official addresses, md5-verified.

A download goes to a temporary file beside the target, is checked against the published md5, then renamed into
place, so an interrupted or corrupted transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from prunekit.data.archive import file_digest, one_line
from prunekit.errors import UserError

_MNIST_BASE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# source name -> (sub-directory of the data root or "", [(file name, url, md5)])
DOWNLOADS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "cifar10": ("", [("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a")]),
    "cifar100": ("", [("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                       "eb9058c3a382ffc7106e4002c42a8d85")]),
    "mnist": ("mnist", [
        ("train-images-idx3-ubyte.gz", _MNIST_BASE + "train-images-idx3-ubyte.gz",
         "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", _MNIST_BASE + "train-labels-idx1-ubyte.gz",
         "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", _MNIST_BASE + "t10k-images-idx3-ubyte.gz",
         "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", _MNIST_BASE + "t10k-labels-idx1-ubyte.gz",
         "ec29112dd5afa0611ce80d1b7f02629c"),
    ]),
    "fashion-mnist": ("fashion-mnist", [
        ("train-images-idx3-ubyte.gz", _FASHION_BASE + "train-images-idx3-ubyte.gz",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", _FASHION_BASE + "train-labels-idx1-ubyte.gz",
         "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", _FASHION_BASE + "t10k-images-idx3-ubyte.gz",
         "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", _FASHION_BASE + "t10k-labels-idx1-ubyte.gz",
         "bb300cfdad3c16e7a12a480ee83cd310"),
    ]),
}


def verify_md5(path: Path, expected: str) -> None:
    """Raise UserError unless the file's md5 is `expected`."""
    actual = file_digest(path, "md5")
    if actual != expected.lower():
        raise UserError(f"{path}: md5 {actual} does not match the published checksum {expected}")


def fetch_verified(url: str, target: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download `url` to a temporary file beside `target`, verify its md5, then rename it to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                out.write(block)
        verify_md5(tmp, md5)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise UserError(f"download of {url} failed ({one_line(exc)}); no network? place the file at {target} "
                        "yourself or set data.path") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def download_source(name: str, root: Path) -> Path:
    """Download the files of source `name` under `root` (skipping verified ones); return the path to load."""
    if name not in DOWNLOADS:
        raise UserError(f"data.download is not available for data.name {name!r} "
                        f"(available for {', '.join(DOWNLOADS)})")
    subdir, files = DOWNLOADS[name]
    directory = root / subdir if subdir else root
    for file_name, url, md5 in files:
        target = directory / file_name
        if target.is_file() and file_digest(target, "md5") == md5:
            continue
        fetch_verified(url, target, md5)
    return directory if subdir else directory / files[0][0]
