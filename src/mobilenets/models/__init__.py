"""Model families: each module holds its paper table, its builder and its registrations."""

from .mobilenet_v1 import mobilenet_v1
from .mobilenet_v2 import mobilenet_v2
from .mobilenet_v3 import mobilenet_v3
from .net import FeatureInfo, FeatureNetwork, MobileNet, Network
from .segmentation import SegmentationNetwork, lraspp, raspp
from .shufflenet_v1 import shufflenet_v1
from .spec import BlockSpec
from .ssdlite import SSDLite, ssdlite

# The families a config.json may name (models.factory builds them); heads add theirs here.
FAMILIES = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "shufflenet_v1", "ssdlite", "lraspp", "raspp"]

__all__ = [
    "BlockSpec",
    "FeatureInfo",
    "FeatureNetwork",
    "MobileNet",
    "Network",
    "SSDLite",
    "SegmentationNetwork",
    "mobilenet_v1",
    "mobilenet_v2",
    "lraspp",
    "mobilenet_v3",
    "raspp",
    "shufflenet_v1",
    "ssdlite",
]
