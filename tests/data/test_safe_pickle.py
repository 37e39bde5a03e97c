import os
import pickle

import numpy as np
import pytest

from prunekit.data.safe_pickle import safe_load_pickle
from prunekit.errors import UserError


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_batch_round_trips():
    batch = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [3, 4], b"batch_label": b"x"}
    loaded = safe_load_pickle(pickle.dumps(batch, protocol=2), "batch")
    assert loaded[b"labels"] == [3, 4] and loaded[b"batch_label"] == b"x"
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])


def test_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": RunsShell(marker)}, protocol=2)
    with pytest.raises(UserError, match="not allowed"):
        safe_load_pickle(payload, "evil")
    assert not marker.exists()


def test_builtins_eval_is_refused():
    payload = b"cbuiltins\neval\n(S'1+1'\ntR."  # protocol-0 GLOBAL builtins.eval, called on "1+1"
    with pytest.raises(UserError, match="builtins.eval"):
        safe_load_pickle(payload, "evil")


def test_codecs_encode_only_does_latin1():
    # _codecs.encode("eJw=", "base64") would be a decoding gadget; only latin-1 str -> bytes is let through
    payload = b"c_codecs\nencode\n(Vabc\nVbase64\ntR."
    with pytest.raises(UserError):
        safe_load_pickle(payload, "evil")
    assert safe_load_pickle(b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.", "ok") == b"abc"


def test_truncated_pickle_is_user_error():
    data = pickle.dumps({b"labels": list(range(100))}, protocol=2)
    with pytest.raises(UserError, match="truncated"):
        safe_load_pickle(data[:-20], "short")
