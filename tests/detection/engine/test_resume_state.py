"""RNG states survive a round trip through a checkpoint file (python, NumPy, torch CPU, CUDA)."""
import random

import numpy as np
import pytest
import torch

from detection.engine.resume_state import capture_rng_state, restore_rng_state


def test_rng_state_round_trip_through_a_checkpoint_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    path = tmp_path / "rng.pth"
    torch.save({"rng": state}, path)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA RNG state needs a CUDA device")
def test_cuda_rng_state_round_trip():
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.manual_seed(4)
    state = capture_rng_state(device)
    expected = torch.rand(3, device=device)
    torch.cuda.manual_seed(5)
    restore_rng_state(state, device)
    assert torch.equal(torch.rand(3, device=device), expected)
