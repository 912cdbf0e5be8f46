"""Tasks: what a model predicts and how it is trained and measured (classification, detection, segmentation).

A task owns its model's data, loss, metrics and pictures; ``mobilenets.training.engine`` owns the loop.
"""
