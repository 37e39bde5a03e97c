import math

import pytest

from prunekit.config import ScheduleConfig
from prunekit.train.schedules import learning_rate


def test_cosine_endpoints_and_midpoint():
    cfg = ScheduleConfig(name="cosine", min_lr=0.0)
    assert learning_rate(0, 10, 10, 0.1, cfg) == pytest.approx(0.1)
    assert learning_rate(50, 10, 10, 0.1, cfg) == pytest.approx(0.05)
    assert learning_rate(99, 10, 10, 0.1, cfg) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.99)))


def test_warmup_is_linear_then_cosine_starts_at_base():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1)
    assert [learning_rate(s, 4, 10, 0.4, cfg) for s in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert learning_rate(4, 4, 10, 0.4, cfg) == pytest.approx(0.4)


def test_multistep_divides_at_milestones():
    cfg = ScheduleConfig(name="multistep", milestones=[2, 4], gamma=0.1)
    lrs = [learning_rate(epoch * 5, 5, 6, 1.0, cfg) for epoch in range(6)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_constant():
    assert learning_rate(123, 10, 20, 0.3, ScheduleConfig(name="constant")) == 0.3
