"""The model registry: names -> factories, default input shapes, and user factories ("package.module:function")."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from prunekit.errors import UserError
from prunekit.registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")
_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {}


def register_model(name: str, input_shape: tuple[int, int, int]) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: register a factory `f(num_classes, in_channels, **kwargs) -> nn.Module` under `name`.

    `input_shape` is the (channels, height, width) of one sample the model is meant for.
    """

    def add(factory: ModelFactory) -> ModelFactory:
        MODELS.register(name)(factory)
        _INPUT_SHAPES[name] = input_shape
        return factory

    return add


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    return MODELS.names()


def is_user_factory(name: str) -> bool:
    """True for a "package.module:function" spec, False for a registry name."""
    return ":" in name


# Never model factories, only ways to run code or unpickle files: the standard library (os:system,
# subprocess:run, pickle:loads, ...) and torch itself (torch.hub:load fetches and runs a hubconf.py, torch:load
# unpickles). Refused even where the caller trusts the spec.
_REFUSED_PACKAGES = frozenset(sys.stdlib_module_names) | {"torch", "builtins", "__main__"}


def check_factory_spec(spec: str) -> tuple[str, str]:
    """(module, attribute) of a "package.module:function" spec, or a one-line UserError for a malformed spec or
    one naming the standard library or torch (e.g. `torch.hub:load`)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise UserError(f"model factory {spec!r} must look like 'package.module:function'")
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in parts) or not attr.isidentifier():
        raise UserError(f"model factory {spec!r} must look like 'package.module:function'")
    if parts[0] in _REFUSED_PACKAGES:
        raise UserError(f"model factory {spec!r}: {parts[0]!r} is not a model package (the standard library and "
                        "torch are never imported as model factories; name your own module)")
    return module_name, attr


def load_user_factory(spec: str) -> ModelFactory:
    """Import `function` from `package.module` for the spec "package.module:function".

    This runs the module's code: call it only for a spec the user wrote or explicitly trusts (a config, a command
    line, `--trust-factory`), never for one read from a file being loaded (see `prunekit.load`)."""
    module_name, attr = check_factory_spec(spec)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import-time failure is the user's module's problem
        raise UserError(
            f"cannot import module {module_name!r} for model factory {spec!r}: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    factory = getattr(module, attr, None)
    if factory is None:
        raise UserError(f"module {module_name!r} has no attribute {attr!r} (model factory {spec!r})")
    if not callable(factory):
        raise UserError(f"model factory {spec!r} is not callable (it is a {type(factory).__name__})")
    return factory


def _check_arguments(factory: ModelFactory, name: str, kwargs: dict[str, Any]) -> None:
    """Raise a one-line UserError when `factory` cannot take these keyword arguments."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and some C callables have no signature: let the call decide
        return
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        raise UserError(f"model {name!r} does not accept these arguments {sorted(kwargs)}: {error}") from error


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build a model from a registry name or a user factory "package.module:function".

    The factory is called as `factory(num_classes=..., in_channels=..., **kwargs)`.
    """
    factory = load_user_factory(name) if is_user_factory(name) else MODELS.get(name)
    return create_model_with(factory, name, num_classes=num_classes, in_channels=in_channels, **kwargs)


def create_model_with(factory: ModelFactory, name: str, num_classes: int = 10, in_channels: int = 3,
                      **kwargs: Any) -> nn.Module:
    """`factory(num_classes=..., in_channels=..., **kwargs)`, checked: arguments it cannot take, a construction
    failure (bad sizes or kwargs) and a result that is not a module are one-line UserErrors named after `name`."""
    arguments = {"num_classes": num_classes, "in_channels": in_channels, **kwargs}
    _check_arguments(factory, name, arguments)
    try:
        model = factory(**arguments)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError) as error:  # bad sizes or kwargs
        first = str(error).splitlines()[0] if str(error) else ""
        raise UserError(f"model {name!r} cannot be built with num_classes={num_classes}, in_channels={in_channels}, "
                        f"kwargs {kwargs}: {type(error).__name__}: {first}"[:500]) from error
    if not isinstance(model, nn.Module):
        raise UserError(f"model factory {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def default_input_shape(name: str) -> tuple[int, int, int]:
    """(channels, height, width) of one sample for a registered model, e.g. (3, 32, 32) for resnet20.

    For a user factory, the factory may carry a `default_input_shape` attribute (a 3-tuple); otherwise this raises
    UserError, and the input shape must come from the data.
    """
    if is_user_factory(name):
        shape = getattr(load_user_factory(name), "default_input_shape", None)
        if shape is None:
            raise UserError(
                f"model factory {name!r} has no default_input_shape attribute; the input shape must come from the data"
            )
        return tuple(int(s) for s in shape)  # type: ignore[return-value]
    MODELS.get(name)  # raises UserError with a suggestion for an unknown name
    return _INPUT_SHAPES[name]
