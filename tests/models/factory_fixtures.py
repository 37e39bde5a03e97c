"""User model factories for the "package.module:function" tests (imported as tests.models.factory_fixtures)."""

from __future__ import annotations

from torch import nn


def tiny_net(num_classes: int = 10, in_channels: int = 3, hidden: int = 8) -> nn.Module:
    """A user factory: conv - ReLU - global pool - linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(hidden, num_classes),
    )


tiny_net.default_input_shape = (3, 16, 16)  # type: ignore[attr-defined]


def no_shape_net(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A user factory without a default_input_shape attribute."""
    return nn.Linear(in_channels, num_classes)


def returns_a_dict(num_classes: int = 10, in_channels: int = 3) -> dict:
    """Not a model factory: returns something that is not an nn.Module."""
    return {"num_classes": num_classes}


NOT_CALLABLE = 42
