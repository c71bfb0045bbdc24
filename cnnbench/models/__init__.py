"""Models written from the papers, and the registry that names them."""
from cnnbench.models.registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    main_logits,
    model_info,
    register_model,
)

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "create_model",
    "list_models",
    "main_logits",
    "model_info",
    "register_model",
]
