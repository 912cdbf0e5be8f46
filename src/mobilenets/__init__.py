"""mobilenets: MobileNetV1/V2/V3 and ShuffleNet V1, built from the papers' tables."""

from .complexity import Profile, compare_published, profile
from .deploy import optimize
from .io import load_model, load_pretrained, save_model
from .models import (
    BlockSpec,
    FeatureInfo,
    FeatureNetwork,
    MobileNet,
    Network,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    shufflenet_v1,
)
from .models.factory import create_model
from .preprocessing import Preprocessing
from .registry import list_models

__version__ = "0.1.0"

__all__ = [
    "BlockSpec",
    "FeatureInfo",
    "FeatureNetwork",
    "MobileNet",
    "Network",
    "Preprocessing",
    "Profile",
    "compare_published",
    "create_model",
    "list_models",
    "load_model",
    "load_pretrained",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3",
    "optimize",
    "profile",
    "save_model",
    "shufflenet_v1",
]
