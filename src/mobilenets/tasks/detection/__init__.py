"""Detection as a training task: SSD losses (``loss``) and the task (``task``).

The SSDLite model is ``mobilenets.models.ssdlite``; the default boxes, box coder, matcher and
post-processing it and the losses share are ``mobilenets.ops``.
"""
