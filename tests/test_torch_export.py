"""torch.export captures every registered model (the entry point of ONNX, ExecuTorch, LiteRT)."""

import pytest
import torch

from mobilenets import create_model, list_models


@pytest.mark.parametrize("name", list_models(task="classification"))  # segmentation: test_segmentation.py
def test_torch_export(name):
    model = create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 80)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
