"""robustreid: reference implementation of "Attention Network Robustification for Person ReID".

Lawen, Ben-Cohen, Protter, Friedman, Zelnik-Manor (Alibaba DAMO Academy): the HA-CNN baseline and the
Robust-ReID network (Table 1), its training recipe, evaluation and tracking. The public API lives here.
"""

from .model import Architecture, ReIDNet, ReIDOutput, build_model, list_models
from .profile import count_macs, count_params, profile_model

__version__ = "0.1.0"

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
]
