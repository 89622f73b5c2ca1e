"""Fixtures shared by test files."""

import pytest
import torch


@pytest.fixture
def restores_the_products_route():
    """Whatever a test does to torch's float32 product route (a process-wide setting that benchmark/update_speed.py
    --onednn changes), the next test gets it back."""
    before = torch.backends.mkldnn.matmul.fp32_precision
    yield
    torch.backends.mkldnn.matmul.fp32_precision = before
