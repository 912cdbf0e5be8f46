"""mobilenets: MobileNetV1/V2/V3 and ShuffleNet V1, built from the papers' tables."""

from .complexity import Profile, compare_published, profile
from .models import FeatureInfo, MobileNet, mobilenet_v1, mobilenet_v2, mobilenet_v3, shufflenet_v1
from .registry import create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "FeatureInfo",
    "MobileNet",
    "Profile",
    "compare_published",
    "create_model",
    "list_models",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3",
    "profile",
    "shufflenet_v1",
]
