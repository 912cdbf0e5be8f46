"""Detection: default boxes, box coding, matching, SSD losses and post-processing (on ``torchvision.ops``).

The SSDLite model itself is ``mobilenets.models.ssdlite``; these modules import nothing else of mobilenets.
"""
