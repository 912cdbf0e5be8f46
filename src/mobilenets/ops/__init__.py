"""Box machinery under the detectors: default boxes, box coding, matching and post-processing (on ``torchvision.ops``).

Below ``models/`` as torchvision keeps ``ops/`` below ``models/detection/``: these modules import nothing else of
mobilenets. The training losses that use them are ``mobilenets.tasks.detection.loss``.
"""
