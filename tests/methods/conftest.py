"""Shared set-up for the method tests: short digits runs configured inline (not from configs/, whose presets
change for product reasons)."""

from collections.abc import Callable

import pytest

from prunekit.config import RunConfig, load_config

# The settings of a short, quick-to-learn run on scikit-learn's bundled 8x8 digits.
DIGITS_RUN = ["data.name=digits", "data.augment=true", "data.crop_padding=1", "data.flip=false",
              "model.name=small_cnn", "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9",
              "optim.nesterov=true", "optim.weight_decay=5e-4", "schedule.name=cosine", "schedule.warmup_epochs=1",
              "train.batch_size=64", "train.seed=0", "train.threads=1", "train.progress=never"]


@pytest.fixture
def digits_config() -> Callable[..., RunConfig]:
    """digits_config(epochs, method, params_yaml, *more_overrides) -> a validated RunConfig."""

    def build(epochs: int, method: str, params: str, *overrides: str) -> RunConfig:
        return load_config(None, [*DIGITS_RUN, f"train.epochs={epochs}", f"method.name={method}",
                                  f"method.params={params}", *overrides])

    return build
