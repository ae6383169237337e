import warnings

import pytest
import torch
from torch import nn

from initlab import initialize, initializers
from initlab.errors import InitlabError
from initlab.models import MLP, SmallCNN


def batch(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def layer_output_variances(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    out: dict[str, float] = {}

    def record(name: str):
        def hook(_module, _args, y) -> None:
            out[name] = float(y.var())

        return hook

    handles = [
        m.register_forward_hook(record(n))
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_every_layer_output_has_unit_variance_within_tolerance(activation):
    model = MLP(64, [128] * 8, 10, activation)
    x = batch(256, 64)
    record = initialize(model, "lsuv(tol=0.05)", data=x, generator=torch.Generator().manual_seed(0))
    for name, var in layer_output_variances(model, x).items():
        assert abs(var - 1.0) < 0.05, (name, var)
    assert all(1 <= r <= 10 for r in record.to_frame()["rescalings"])


def test_lsuv_rescues_a_deep_sigmoid_net_whose_plain_orthogonal_init_shrinks():
    model = MLP(64, [128] * 12, 10, "sigmoid")
    x = batch(256, 64)
    initialize(model, "orthogonal")
    plain = layer_output_variances(model, x)["blocks.11.linear"]
    initialize(model, "lsuv", data=x)
    assert plain < 0.5 and layer_output_variances(model, x)["blocks.11.linear"] == pytest.approx(
        1, abs=0.1
    )


def test_convolutions_and_batch_norm_and_dropout_work_and_the_mode_is_restored():
    model = SmallCNN((1, 28, 28), 10, batch_norm=True)
    model.train()
    initialize(model, "lsuv", data=(batch(64, 1, 28, 28), torch.zeros(64)))
    assert model.training
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.all(bn.running_mean == 0)  # eval-mode passes did not update BN statistics
    dropout_net = MLP(20, [32, 32], 3, dropout=0.5).eval()
    initialize(dropout_net, "lsuv", data=batch(128, 20))
    assert not dropout_net.training


def test_lsuv_needs_data_and_is_in_the_registry():
    with pytest.raises(InitlabError, match=r"needs data: initialize\(model, 'lsuv', data=batch"):
        initialize(MLP(4, [4], 2), "lsuv")
    from initlab.errors import surface

    with surface("cli"), pytest.raises(InitlabError, match="needs data: --data with the model"):
        initialize(MLP(4, [4], 2), "lsuv")  # initlab plan --init lsuv named Python's call
    assert "lsuv" in initializers.names()
    assert initializers.parse("lsuv(tol=0.05, max_iter=3)").params["max_iter"] == 3
    with pytest.raises(InitlabError, match="tol"):
        initializers.parse("lsuv(tol=-1)")


def test_the_tensor_part_alone_is_the_orthonormal_start():
    w = initializers.get("lsuv")(torch.empty(30, 50), torch.Generator().manual_seed(1))
    assert torch.allclose(w @ w.T, torch.eye(30), atol=1e-5)


def test_lsuv_on_inputs_that_do_not_vary_says_it_could_not_rescale():
    """All-zero data left every layer at its orthogonal start, 'output_var 0.0, rescalings
    0', without a word (API fuzz)."""
    import initlab
    from initlab.notes import InitlabNote

    model = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with pytest.warns(
        InitlabNote, match="LSUV could not rescale 0, 2: their outputs on the batch have"
    ):
        initlab.initialize(model, "lsuv", data=torch.zeros(8, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InitlabNote)
        initlab.initialize(model, "lsuv", data=torch.randn(8, 20))
