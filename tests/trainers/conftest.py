import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small nets run fastest on one thread, and the 2-core test machine is shared with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_TRAINED: dict = {}


@pytest.fixture(scope="session")
def trained_toy():
    """trained_toy(density, objective) -> (cfg, model, density): 4000 Adam steps, seed 0, trained once
    per session (shared by the end-to-end and any-sampler tests)."""
    from trainers.densities import preset
    from trainers.fitting import ToyConfig, train

    def get(density_name: str, objective: str):
        key = (density_name, objective)
        if key not in _TRAINED:
            density = preset(density_name)
            cfg = ToyConfig(density=density_name, objective=objective, steps=4000, seed=0)
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            model, losses = train(cfg, density)
            torch.set_num_threads(before)
            _TRAINED[key] = (cfg, model, density, losses)
        return _TRAINED[key]
    return get
