import hashlib

import pytest

from prunekit.data.download import DOWNLOADS, download_source, fetch_verified, verify_md5
from prunekit.errors import UserError


def test_verify_md5_on_a_local_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"prunekit" * 1000)
    verify_md5(path, hashlib.md5(b"prunekit" * 1000).hexdigest())
    with pytest.raises(UserError, match="does not match the published checksum"):
        verify_md5(path, "0" * 32)


def test_fetch_verifies_then_renames(tmp_path):
    source = tmp_path / "served.bin"
    source.write_bytes(b"abc" * 100)
    good = hashlib.md5(b"abc" * 100).hexdigest()
    target = tmp_path / "out" / "file.bin"
    fetch_verified(source.as_uri(), target, good)  # file:// URL: no network involved
    assert target.read_bytes() == b"abc" * 100
    bad_target = tmp_path / "out" / "bad.bin"
    with pytest.raises(UserError, match="md5"):
        fetch_verified(source.as_uri(), bad_target, "f" * 32)
    assert not bad_target.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["file.bin"]  # no temporary left behind


def test_failed_download_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="download of .* failed"):
        fetch_verified((tmp_path / "absent.bin").as_uri(), tmp_path / "x.bin", "0" * 32)


def test_table_and_unknown_source(tmp_path):
    assert set(DOWNLOADS) == {"cifar10", "cifar100", "mnist", "fashion-mnist"}
    assert all(len(md5) == 32 for _, files in DOWNLOADS.values() for _, _, md5 in files)
    with pytest.raises(UserError, match="not available"):
        download_source("digits", tmp_path)
