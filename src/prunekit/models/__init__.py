"""Model registry and definitions (own code; no torchvision).

create_model("resnet20", num_classes=10, in_channels=3)
create_model("mypackage.nets:build", num_classes=100)   # a user factory
list_models(); default_input_shape("resnet20") == (3, 32, 32)
"""

from prunekit.models import cifar_resnet, imagenet_resnet, mobilenetv2, small, vgg  # noqa: F401  (registration)
from prunekit.models.registry import (
    MODELS,
    create_model,
    default_input_shape,
    list_models,
    load_user_factory,
    register_model,
)

__all__ = ["MODELS", "create_model", "default_input_shape", "list_models", "load_user_factory", "register_model"]
