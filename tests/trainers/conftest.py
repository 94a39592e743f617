import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small nets run fastest on one thread, and the 2-core test machine is shared with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
