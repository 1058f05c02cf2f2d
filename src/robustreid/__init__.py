"""robustreid: reference implementation of "Attention Network Robustification for Person ReID".

Lawen, Ben-Cohen, Protter, Friedman, Zelnik-Manor (Alibaba DAMO Academy): the HA-CNN baseline and the
Robust-ReID network (Table 1), its training recipe, evaluation and tracking. The public API lives here.
"""

from .model import Architecture, ReIDNet, ReIDOutput, build_model, list_models
from .profile import count_macs, count_params, profile_model

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so ``import robustreid`` stays light and the package's import order is kept.
# (``robustreid.evaluate`` is the module; its function is ``robustreid.evaluate.evaluate``.)
_LAZY = {
    "load_dataset": "datasets",
    "dataset_from_spec": "datasets",
    "build_config": "config",
    "FeatureExtractor": "evaluate",
    "evaluate_rank": "metrics",
    "evaluate_features": "metrics",
    "load_pretrained": "zoo",
    "list_zoo": "zoo",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'robustreid' has no attribute {name!r}")

__all__ = [
    "__version__",
    "Architecture",
    "ReIDNet",
    "ReIDOutput",
    "build_model",
    "list_models",
    "count_params",
    "count_macs",
    "profile_model",
    "load_dataset",
    "dataset_from_spec",
    "build_config",
    "FeatureExtractor",
    "evaluate_rank",
    "evaluate_features",
    "load_pretrained",
    "list_zoo",
]
