"""initlab.probe.diagnose on real networks: each classic failure seen, healthy nets clean."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.models import MLP, SmallCNN
from initlab.probe import FINDINGS, METRICS, Diagnosis, diagnose
from initlab.probe.findings import ratio

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def batch():
    """A deterministic Gaussian batch shaped like flattened Fashion-MNIST, with labels."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 784, generator=g), torch.randint(0, 10, (256,), generator=g)


def mlp(activation, init, depth, width=256, *, batch_norm=False, bias="zeros", dropout=0.0):
    torch.manual_seed(0)
    model = MLP(784, [width] * depth, 10, activation, batch_norm=batch_norm, dropout=dropout)
    initlab.initialize(
        model,
        init,
        bias=bias,
        output_init="glorot_uniform",
        generator=torch.Generator().manual_seed(1),
    )
    return model


def sgd_steps(model, x, y, *, steps: int, lr: float) -> None:
    """``steps`` full-batch SGD steps of cross-entropy on ``(x, y)``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def hidden_std(d: Diagnosis):
    return d.layers["post_std"].iloc[:-1]


def test_zeros_are_symmetric_and_stay_so_under_sgd(batch):
    x, y = batch
    model = mlp("tanh", "zeros", 3, 64)
    assert "symmetry" in diagnose(model, x, y).names
    sgd_steps(model, x[:64], y[:64], steps=5, lr=0.1)
    after = diagnose(model, x, y)
    assert "symmetry" in after.names
    first = model.blocks[0].linear
    rows = torch.cat([first.weight, first.bias[:, None]], dim=1).detach()
    # every hidden unit still identical, to rounding: SGD's matrix products may sum the units
    # in different orders (kernels differ between CPUs), so not necessarily bit for bit
    atol = 50 * torch.finfo(rows.dtype).eps * math.sqrt(x.shape[1]) * float(rows.abs().max())
    torch.testing.assert_close(rows, rows[:1].expand_as(rows), rtol=0, atol=atol)
    assert "blocks.0.linear" in after.finding("symmetry").layers


def test_deep_tanh_with_small_normal_vanishes(batch):
    d = diagnose(mlp("tanh", "random_normal", 20), *batch)
    assert {"vanishing_activations", "vanishing_gradients"} <= set(d.names)
    std = hidden_std(d)
    assert std.iloc[-1] / std.iloc[0] < 0.02  # orders of magnitude
    advice = d.finding("vanishing_activations").suggestion
    # the edge of chaos, sigma_w² = 1, as the doctor plans tanh: PyTorch's 5/3 (2.78) is
    # chaotic at depth, and the suggestion contradicted its own mean-field note
    assert "use lecun_normal (fan_in) or glorot_normal (fan_avg)" in advice
    assert "1.667" not in advice and "edge of chaos at sigma_w² = 1" in advice


def test_the_prescribed_tanh_scale_follows_the_biases_variance(batch):
    """With biases of variance 0.05 tanh's edge of chaos is sigma_w² ≈ 1.761, not 1
    (Schoenholz et al. 2017): the advice prescribed gain 1 while its own mean-field note
    said the edge was at 1.75."""
    model = mlp("tanh", "random_normal(stddev=0.003)", 20)
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.bias, std=0.05**0.5)
    advice = diagnose(model, *batch).finding("vanishing_gradients").suggestion
    # the measured bias variance of 256 units is within ~10% of 0.05 (relative s.e.
    # sqrt(2/256)): the prescribed scale moves from 1 by far more than that
    note = float(re.search(r"edge of chaos at sigma_w² = ([\d.]+)", advice).group(1))
    scale = float(re.search(r"variance_scaling\(scale=([\d.]+)", advice).group(1))
    assert 1.6 < scale < 1.95 and abs(scale - note) < 0.01 * note, advice
    assert "(its edge of chaos)" in advice
    # initialize's default bias='zeros' would move the edge back to 1: the advice says so
    assert advice.endswith("with these biases kept (bias='keep'): with zero biases the edge "
                           "of chaos is at gain 1")  # fmt: skip


def test_deep_tanh_with_glorot_does_not_vanish(batch):
    d = diagnose(mlp("tanh", "glorot_normal", 20), *batch)
    assert not {"vanishing_activations", "vanishing_gradients"} & set(d.names)


def test_batch_norm_rescues_the_deep_tanh_network(batch):
    d = diagnose(mlp("tanh", "random_normal", 20, batch_norm=True), *batch)
    assert "vanishing_activations" not in d.names and "vanishing_gradients" not in d.names
    assert d.summary["activation_std_ratio"] > 0.5


def test_deep_relu_with_he_keeps_its_scale_and_explodes_with_unit_normal(batch):
    he = diagnose(mlp("relu", "he_normal", 50), *batch)
    std = hidden_std(he)
    assert std.max() / std.min() < 3
    assert not {"vanishing_activations", "exploding_activations"} & set(he.names)
    big = diagnose(mlp("relu", "random_normal(stddev=1.0)", 50), *batch)
    assert "exploding_activations" in big.names
    assert "he_normal" in big.finding("exploding_activations").suggestion


def test_deep_relu_with_glorot_is_told_to_use_he(batch):
    d = diagnose(mlp("relu", "glorot_normal", 50), *batch)
    assert "vanishing_activations" in d.names
    assert "he_normal" in d.finding("vanishing_activations").suggestion


def test_sigmoid_with_unit_normal_saturates(batch):
    d = diagnose(mlp("sigmoid", "random_normal(stddev=1.0)", 3), *batch)
    assert "saturation" in d.names
    finding = d.finding("saturation")
    assert all(v > 0.5 for v in finding.values.values()) and finding.threshold == 0.5
    assert "lecun_normal" in finding.suggestion or "glorot_normal" in finding.suggestion


def test_sigmoid_at_hes_scale_is_not_told_to_shrink_its_weights(batch):
    # sigmoid's derivative is at most 1/4: its gradients vanish at He's scale, and the gain
    # rule (lecun/glorot, smaller weights) would make them vanish faster
    d = diagnose(mlp("sigmoid", "he_normal", 5), *batch)
    advice = d.finding("vanishing_gradients").suggestion
    assert "lecun_normal" not in advice and "glorot_normal" not in advice
    assert "would make the weights smaller" in advice and "activation" in advice


def test_zero_weights_behind_batch_norm_are_blamed_on_the_init(batch):
    d = diagnose(mlp("tanh", "zeros", 6, 64, batch_norm=True), *batch)
    advice = d.finding("vanishing_gradients").suggestion
    assert "the init is the cause" in advice and "skip connections" not in advice
    d = diagnose(mlp("relu", "zeros", 6, 64, batch_norm=True), *batch)
    advice = d.finding("dead_units").suggestion
    assert "the init is the cause" in advice and "skip connections" not in advice


def test_tanh_units_at_zero_under_zero_weights_are_not_dead(batch):
    """tanh(0) = 0 with tanh'(0) = 1: the units pass their gradient on; their zero weights
    block it (symmetry names them). 'dead_units' told students the wrong physics, and
    sigmoid's table, where sigma(0) = 0.5, said dead 0 for the same situation."""
    d = diagnose(mlp("tanh", "zeros", 4, 32), *batch)
    assert "dead_units" not in d.names and "symmetry" in d.names
    hidden = d.layers[d.layers["layer"] != d.layers["layer"].iloc[-1]]
    assert (hidden["dead_frac"] == 0).all() and (hidden["post_std"] == 0).all()
    d = diagnose(mlp("relu", "zeros", 4, 32), *batch)  # relu'(0) = 0: dead indeed
    assert "dead_units" in d.names


def test_a_constant_first_layer_after_training_is_not_exploding(batch):
    # zero hidden weights, trained: tanh(0) = 0 in the first layer for every input while
    # the last hidden layer's biases learned (std > 0): nothing grew from 0
    x, y = batch
    model = mlp("tanh", "zeros", 3, 64)
    sgd_steps(model, x[:64], y[:64], steps=20, lr=0.5)
    d = diagnose(model, x, y)
    assert float(d.layers["post_std"].iloc[0]) == 0 and float(d.layers["post_std"].iloc[2]) > 0
    assert "exploding_activations" not in d.names and "symmetry" in d.names


def test_relu_with_a_large_negative_bias_has_dead_units(batch):
    d = diagnose(mlp("relu", "he_normal", 3, bias=-10.0), *batch)
    assert "dead_units" in d.names
    assert "zero biases" in d.finding("dead_units").suggestion
    # the signal and the gradients vanish over 3 layers for the same reason: they blamed
    # depth ("consider normalization or less depth") while dead_units named the biases
    d = diagnose(mlp("relu", "he_normal", 3, bias=-2.0), *batch)
    for name in ("vanishing_activations", "vanishing_gradients", "dead_units"):
        advice = d.finding(name).suggestion
        assert advice.startswith("the biases (mean -2 at") and "depth" not in advice, name


def test_a_healthy_relu_mlp_has_no_findings(batch):
    torch.manual_seed(0)
    model = MLP(784, [300, 100], 10, "relu")
    initlab.initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    d = diagnose(model, *batch)
    assert d.findings == [] and d.healthy
    assert "healthy" in str(d)


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [m.training for m in model.modules()],
        torch.get_rng_state(),
    )


def test_the_model_is_left_exactly_as_it_was(batch):
    x, y = batch
    model = mlp("relu", "he_normal", 3, 32, batch_norm=True, dropout=0.3)
    model.eval()
    model.blocks[1].train()  # mixed modes must come back mixed
    model.blocks[0].linear.weight.grad = torch.ones_like(model.blocks[0].linear.weight)
    before = snapshot(model)
    diagnose(model, x, y)
    diagnose(model, x)  # the random-cotangent path too
    after = snapshot(model)
    for key, value in before[0].items():
        assert torch.equal(value, after[0][key]), key
    for g0, g1 in zip(before[1], after[1], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
    assert before[2] == after[2]
    assert torch.equal(before[3], after[3])
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks
    assert not x.requires_grad


def test_batch_norm_running_stats_are_restored_in_train_mode(batch):
    model = mlp("tanh", "he_normal", 2, 16, batch_norm=True)
    norm = model.blocks[0].norm
    mean, count = norm.running_mean.clone(), int(norm.num_batches_tracked)
    diagnose(model, *batch)
    assert torch.equal(norm.running_mean, mean) and int(norm.num_batches_tracked) == count


def test_rows_layers_table_and_outputs(batch, tmp_path):
    d = diagnose(mlp("tanh", "random_normal", 4, 32), *batch, label="small")
    rows = d.to_rows()
    assert set(rows[0]) == {"layer", "metric", "value"}
    assert len(rows) == len(d.layers) * len(METRICS)
    assert {r["metric"] for r in rows} == set(METRICS)
    assert list(d.layers["layer"]) == [f"blocks.{i}.linear" for i in range(4)] + ["output"]
    assert set(METRICS) | {"q_pred", "activation", "fan_in"} <= set(d.layers.columns)
    assert "blocks.3.linear" in str(d) and "<table" in d._repr_html_()
    assert repr(d) == str(d)  # a REPL shows the table, not a dump of the dataclass
    assert d.plot(tmp_path / "d.png").stat().st_size > 10_000
    assert all(name in FINDINGS for name in d.names)


def test_mean_field_prediction_matches_a_plain_mlp_and_is_absent_with_batch_norm(batch):
    d = diagnose(mlp("tanh", "glorot_normal", 6, 256), *batch)
    ratio = d.layers["pre_msq"] / d.layers["q_pred"]
    assert ratio.between(0.8, 1.25).all()
    bn = diagnose(mlp("tanh", "glorot_normal", 3, 32, batch_norm=True), *batch)
    assert bn.layers["q_pred"].isna().all()


def test_works_under_no_grad_and_refuses_bad_calls(batch):
    model = mlp("relu", "he_normal", 2, 32)
    with torch.no_grad():
        d = diagnose(model, *batch)
    assert d.layers["weight_grad_norm"].notna().all()
    with pytest.raises(initlab.InitlabError, match="probe mode"):
        diagnose(model, batch[0], mode="inference")

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(initlab.InitlabError, match="one tensor"):
        diagnose(Pair(), batch[0])
    x, y = batch
    with pytest.raises(
        initlab.InitlabError, match=f"targets have 16 examples and the inputs {len(x)}"
    ):
        diagnose(model, x, y[:16])
    with pytest.raises(initlab.InitlabError, match=r"labels must lie in \[0, 10\)"):
        diagnose(model, x, y + 10)


def test_random_cotangent_is_deterministic(batch):
    model = mlp("relu", "he_normal", 2, 32)
    a, b = diagnose(model, batch[0]), diagnose(model, batch[0])
    assert a.layers[list(METRICS)].equals(b.layers[list(METRICS)])


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(20, 30), nn.Linear(30, 30), nn.Linear(30, 5)

    def forward(self, x):
        return self.c(torch.tanh(self.b(F.relu(self.a(x)))))


def test_functional_activations_are_seen_as_the_next_layers_input():
    d = diagnose(Functional(), torch.randn(64, 20, generator=torch.Generator().manual_seed(0)))
    assert list(d.layers["activation"].iloc[:2]) == ["relu", "tanh"]
    assert d.layers["post_std"].iloc[:2].notna().all()


def test_convolutions_and_in_place_activations():
    g = torch.Generator().manual_seed(0)
    cnn = SmallCNN((1, 12, 12), 10, "relu", channels=(4, 8), dense=16)
    d = diagnose(cnn, torch.randn(16, 1, 12, 12, generator=g), torch.randint(0, 10, (16,)))
    assert list(d.layers["type"]) == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert list(d.layers["units"]) == [4, 8, 16, 10]
    seq = nn.Sequential(nn.Linear(8, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))
    row = diagnose(seq, torch.randn(32, 8, generator=g)).layers.iloc[0]
    assert row["pre_mean"] < row["post_mean"]  # z copied before ReLU overwrote it
    assert row["pre_grad_std"] < row["post_grad_std"]  # dL/dz = relu'(z) dL/dphi


@pytest.mark.skipif(not FASHION.is_file(), reason="Fashion-MNIST not installed")
def test_fashion_mnist_deep_tanh_vanishes():
    data = initlab.data.load("fashion-mnist", download=False)
    d = diagnose(mlp("tanh", "random_normal", 20), data.x_train[:512], data.y_train[:512])
    assert {"vanishing_activations", "vanishing_gradients"} <= set(d.names)


def test_depth_ratios_keep_explosions_and_refuse_nonsense():
    inf, nan = float("inf"), float("nan")
    assert ratio(inf, 2.0) == inf and ratio(1.0, inf) == 0.0 and ratio(3.0, 0.0) == inf
    for a, b in ((0.0, 0.0), (inf, inf), (1.0, nan), (nan, 1.0)):
        assert ratio(a, b) != ratio(a, b)  # NaN
    assert ratio(1.0, 4.0) == 0.25


class FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(784, 32), nn.Linear(32, 10)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


def test_all_zero_outputs_do_not_make_up_an_activation(batch):
    # zero init: every output is exactly 0, which relu, tanh and identity all map to 0
    linear = diagnose(mlp("linear", "zeros", 2, 32), *batch)
    assert linear.layers["activation"].iloc[:2].tolist() == ["linear", "linear"]
    relu = FunctionalRelu()
    initlab.initialize(relu, "zeros")
    assert diagnose(relu, *batch).layers["activation"].iloc[0] == "relu"


def test_the_default_loss_follows_the_targets():
    """Float targets are regression (MSE, not cross-entropy on soft labels); [B, T] token
    ids against [B, T, V] outputs are token cross-entropy: the gradients of passing that
    loss explicitly (to float32 rounding: a mean over 192 and 24 terms, other kernels)."""

    def grad_stds(d):
        return {r["layer"]: r["value"] for r in d.to_rows() if r["metric"] == "pre_grad_std"}

    tol = 50 * torch.finfo(torch.float32).eps * math.sqrt(192)
    torch.manual_seed(0)
    regressor = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(64, 5), torch.randn(64, 3)
    mse = grad_stds(diagnose(regressor, x, y, loss=F.mse_loss))
    assert grad_stds(diagnose(regressor, x, y)) == pytest.approx(mse, rel=tol)
    lm = nn.Sequential(nn.Embedding(7, 8), nn.Linear(8, 7))
    ids = torch.randint(0, 7, (4, 6))

    def token_ce(out, target):
        return F.cross_entropy(out.reshape(-1, 7), target.reshape(-1))

    expected = grad_stds(diagnose(lm, ids, ids, loss=token_ce))
    assert grad_stds(diagnose(lm, ids, ids)) == pytest.approx(expected, rel=tol)


class ResMLP(nn.Module):
    """``h ← h + W2 relu(W1 h)`` × depth, with an optional layer-scale ``gamma`` per block."""

    def __init__(self, depth: int, width: int = 64, gamma: float | None = None) -> None:
        super().__init__()
        self.stem, self.head = nn.Linear(784, width), nn.Linear(width, 10)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(depth)
        )
        self.gammas = nn.ParameterList(
            nn.Parameter(torch.full((width,), gamma)) for _ in range(depth if gamma else 0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for k, block in enumerate(self.blocks):
            h = h + (self.gammas[k] * block(h) if len(self.gammas) else block(h))
        return self.head(h)


def _residual(depth: int, rule: str = "none", gamma: float | None = None) -> nn.Module:
    torch.manual_seed(0)
    model = ResMLP(depth, gamma=gamma)
    generator = torch.Generator().manual_seed(1)
    initlab.initialize(model, "he_normal", generator=generator, residual_init=rule)
    return model


def test_switched_off_branches_are_neither_exploding_gradients_nor_symmetry(batch):
    # zeroed last layers (SkipInit/Fixup) and a layer-scale of 1e-6 (ConvNeXt) put the
    # branches' inner gradients at 0 or 1e-6 of the stream's: comparing the first hidden
    # layer (the stem) with the last branch's inner layer read that as an explosion, and the
    # zeroed rows as symmetry to break
    x, y = batch
    for model in (_residual(6, "zero_last_layer"), _residual(6, gamma=1e-6)):
        found = diagnose(model, x, y)
        assert found.healthy, found.findings
        assert found.layers["branch"].nunique() == 6
    # the same comparison still sees a real explosion: 12 unscaled He branches double the
    # stream's variance each (a ratio of about 2^6 = 64 in std)
    exploding = diagnose(_residual(12), x, y).findings[0]
    assert exploding.name == "exploding_activations"
    # the remedy is a residual rule: each He layer follows the gain rule already
    assert exploding.suggestion.startswith("the model's 12 residual branches add to the")
    assert "--residual-init fixup" in exploding.suggestion
    # and a zeros init inside the branches is symmetry (the first layers' units are alike)
    zeros = _residual(3)
    for block in zeros.blocks:
        nn.init.zeros_(block[0].weight)
    assert "symmetry" in diagnose(zeros, x, y).names


def test_gradients_that_vanish_to_exactly_zero_are_still_vanishing(batch):
    """At depth 50 with std 0.01 every hidden dL/dz underflows to 0.0 in float32 and the
    ratios are 0/0: the worst vanishing went unreported while depth 20 (1e-18) was caught.
    A ReLU zeros init cuts the gradient with its zero weights: the same finding."""
    x, y = batch
    deep = diagnose(mlp("relu", "random_normal(stddev=0.01)", 50), x, y)
    assert (deep.layers["pre_grad_std"].iloc[:-1] == 0).all()  # the failure mode is real
    assert "vanishing_gradients" in deep.names
    said = deep.finding("vanishing_gradients").message
    assert "first/last hidden 0/0 (dL/dz is 0 at every hidden layer)" in said  # not 'nan'
    assert "vanishing_gradients" in diagnose(mlp("relu", "zeros", 5), x, y).names
    assert "vanishing_gradients" not in diagnose(mlp("relu", "he_normal", 5), x, y).names


class PlainThenResidual(nn.Module):
    """8 plain tanh layers, then 2 residual blocks: the plain stack's vanishing counts."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.plain = nn.ModuleList(nn.Linear(16 if i == 0 else width, width) for i in range(8))
        self.res = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))
            for _ in range(2)
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.plain:
            x = torch.tanh(layer(x))
        for block in self.res:
            x = x + block(x)
        return self.head(x)


def test_residual_comparisons_keep_plain_layers_and_compare_branches_of_one_kind():
    from initlab.models.gpt import gpt

    torch.manual_seed(0)
    model = PlainThenResidual()
    initlab.initialize(model, "normal(std=0.02)")
    x, y = torch.randn(64, 16), torch.randint(0, 10, (64,))
    found = diagnose(model, x, y).names
    assert "vanishing_activations" in found and "vanishing_gradients" in found
    # a pre-norm GPT: attention branches are compared with attention branches (comparing
    # blocks.0.attn.q with blocks.3.mlp.fc called a small-std init vanishing), and a
    # zeroed last layer per branch is no 'dL/dz exactly 0' at the first layer
    tokens = torch.randint(0, 64, (8, 32), generator=torch.Generator().manual_seed(0))
    for init, rule in (("normal(std=0.005)", "none"), ("normal(std=0.02)", "zero_last_layer")):
        torch.manual_seed(0)
        net = gpt(depth=4)
        initlab.initialize(net, init, residual_init=rule)
        assert diagnose(net, tokens, tokens).healthy, (init, rule)
    # unit-normal weights explode; a pre-norm GPT has no first layer outside its branches,
    # so the message leaves out the weight-gradient ratio it cannot compute (it said "nan")
    torch.manual_seed(0)
    net = gpt(depth=4)
    initlab.initialize(net, "normal(std=1.0)")
    found = {f.name: f for f in diagnose(net, tokens, tokens).findings}
    assert "exploding_gradients" in found
    assert "nan" not in found["exploding_gradients"].message
    # q/k/v meet attention's matrix products, out_proj and fc2 join the stream: all linear
    # (gain 1); q/k/v were said untraced and got LSUV in the plan
    advice = found["exploding_gradients"].suggestion
    assert "linear layers have weight std" in advice and "at blocks.0.attn.q" in advice
    assert "no activation was traced" not in advice


def test_residual_findings_on_initlabs_own_models_and_stage_names(batch):
    from initlab.models.gpt import gpt

    x, y = batch
    # one-layer branches gated or scaled by a rule are neither vanishing activations nor
    # dead units (zero_last_layer leaves ReLU-ended branches as drawn: see below)
    for rule in ("skipinit", "fixup"):
        torch.manual_seed(0)
        net = MLP(784, [32] * 12, 10, "relu", residual=True)
        initlab.initialize(net, "he_normal", residual_init=rule)
        assert diagnose(net, x, y).healthy, rule
    # branches in numbered stages (stage1, stage2, ...) are one kind: 12 unscaled He
    # branches still explode when they sit in three stages
    staged = _residual(12)
    staged.blocks = nn.ModuleList()  # rebuild the same blocks under stage names
    for s in range(3):
        stage = nn.ModuleList(_residual(12).blocks[4 * s : 4 * s + 4])
        staged.add_module(f"stage{s + 1}", stage)
    staged.forward = lambda inp: _staged_forward(staged, inp)
    assert "exploding_activations" in diagnose(staged, x, y).names
    # a pre-norm GPT under SkipInit (a zero gate after every branch) is healthy
    tokens = torch.randint(0, 64, (8, 32), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    gated = gpt(depth=4)
    initlab.initialize(gated, "normal(std=0.02)", residual_init="skipinit")
    assert diagnose(gated, tokens, tokens).healthy


def test_a_relu_residual_mlp_is_told_skipinit_never_a_zero_rule(batch):
    """initlab's residual MLP ends each branch in a ReLU (``linear → relu``, then ``x + h``):
    a zero rule would leave it dead (relu(0) = 0, relu'(0) = 0), so the rule keeps the
    branches as drawn. Before, ``zero_last_layer`` made the model look healthy (a shallow
    net in disguise) and the suggestion for its exploding stream named that very rule."""
    import warnings

    from initlab.notes import InitlabNote

    x, y = batch
    for rule in ("none", "zero_last_layer"):
        torch.manual_seed(0)
        net = MLP(784, [32] * 12, 10, "relu", residual=True)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", InitlabNote)
            initlab.initialize(net, "he_normal", residual_init=rule)
        noted = " ".join(str(w.message) for w in said)
        assert ("leaves all 11 branches as initialized" in noted) == (rule != "none")
        found = {f.name: f for f in diagnose(net, x, y).findings}
        assert "exploding_activations" in found, rule
        advice = found["exploding_activations"].suggestion
        rules = "(--residual-init skipinit or fixup, not zero_last_layer or zero_last_norm: "
        assert f"{rules}a ReLU ends every branch (blocks.1.act (ReLU) after blocks.1" in advice
        for f in found.values():  # large_logits and exploding_gradients name rules too
            assert "zero_last" not in f.suggestion.replace("not zero_last_layer or zero_", "")
    # tanh branches (tanh'(0) = 1) may be zeroed: the zero rules stay in the advice
    torch.manual_seed(0)
    net = MLP(784, [32] * 12, 10, "tanh", residual=True)
    initlab.initialize(net, "he_normal")
    found = {f.name: f for f in diagnose(net, x, y).findings}
    assert (
        "--residual-init depth_scaled, zero_last_layer or fixup;"
        in found["large_logits"].suggestion
    )


def test_a_model_with_some_branches_a_relu_ends_says_how_many():
    import pandas as pd

    from initlab.probe.branches import with_branches
    from initlab.probe.residual_advice import residual_advice

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + F.relu(self.a(x))  # dead if zeroed
            x = x + self.b(F.relu(x))
            return x + self.c(torch.tanh(x))

    layers = pd.DataFrame({"layer": ["a", "b", "c"], "weight_std": [0.3] * 3})
    frame = with_branches(layers, Mixed(), torch.randn(4, 8))
    dead = frame["branch_dead_if_zeroed"]
    assert dead.iloc[0] == "relu" and dead.isna().tolist() == [False, True, True]
    assert residual_advice(frame) == (
        "the model's 3 residual branches add to the stream at full scale, so the signal grows "
        "with depth whatever each layer's init: apply a residual rule (--residual-init fixup, "
        "skipinit or zero_last_layer; zero_last_norm when a branch ends in a norm; 1 of 3 "
        "branches end in a ReLU (relu after a), which the zero rules leave as drawn (zeroed, "
        "relu(0) = 0 and relu'(0) = 0 would keep them from training): skipinit starts every "
        "branch at 0; initialize(..., residual_init=...); docs/residual.md)"
    )


def _staged_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = model.stem(x)
    for s in range(3):
        for block in getattr(model, f"stage{s + 1}"):
            h = h + block(h)
    return model.head(h)


def test_a_measured_sigma_w2_at_the_edge_within_sampling_noise_is_the_edge():
    from initlab.probe.meanfield import theory_note

    # He weights measured at 2.003 on 90,000 samples (standard error 0.0047 x 2): the edge,
    # not "exploding, trainable depth 8240"
    assert "is the edge of chaos" in theory_note("relu", 2.003, 0.0, weights=90_000)
    assert "is exploding" in theory_note("relu", 2.2, 0.0, weights=90_000)
    assert "is vanishing" in theory_note("relu", 1.8, 0.0, weights=90_000)  # ReLU: homogeneous


def test_numpy_batches_float64_inputs_and_float_labels_are_taken_as_compare_takes_them():
    # numpy inputs raised "flatten() takes from 0 to 1 positional arguments", float64 a
    # dtype mismatch, and whole-number float labels were read as regression targets
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)), rng.integers(0, 4, 64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    reference = diagnose(model, torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    for inputs, targets in ((x, y), (torch.tensor(x), torch.tensor(y, dtype=torch.float32))):
        found = diagnose(model, inputs, targets)
        assert found.names == reference.names
        # the same float32 batch either way: the same numbers, computed by the same ops
        assert np.allclose(found.layers["post_std"], reference.layers["post_std"], equal_nan=True)


def test_findings_json_writes_an_uncomputable_ratio_as_null():
    """A nanoGPT model (no layer outside its branches) wrote "weight_grad_norm_ratio": "nan"."""
    import json

    from initlab.jsonsafe import json_number

    assert json_number(float("nan")) is None and json_number(float("inf")) == "inf"
    assert json_number(-float("inf")) == "-inf" and json_number(0.5) == 0.5
    d = diagnose(nn.Sequential(nn.Linear(4, 3)), torch.randn(8, 4))  # one layer: no ratio
    summary = json.loads(json.dumps(d.to_dict()))["summary"]
    assert summary["activation_std_ratio"] is None


def test_columns_no_layer_has_a_value_for_are_left_out_of_the_table():
    """A transformer's table showed q (MF) and sat as a column of "—" on every row."""
    import pandas as pd

    from initlab.probe.diagnosis import SHOWN, WHERE_DEFINED, Diagnosis

    numbers = {column: [1.0, 2.0] for column in SHOWN}
    layers = pd.DataFrame(numbers | {"layer": ["a", "b"], "activation": ["gelu"] * 2})
    layers = layers.assign(q_pred=float("nan"), saturated_frac=[float("nan"), 0.1])
    shown = Diagnosis(layers, []).table().columns
    assert "q (MF)" not in shown and "sat" in shown and len(WHERE_DEFINED) == 2


def test_a_one_layer_model_whose_gradients_are_not_finite_is_not_healthy():
    """The depth ratios need two layers, so a model making inf at init was 'healthy'."""
    import torch
    from torch import nn

    from initlab.probe import diagnose

    class Overflow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x) * 1e38 * 1e38  # inf in float32

    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    found = diagnose(Overflow(), x, y).finding("exploding_gradients")
    assert found is not None and "not finite" in found.message
    assert diagnose(nn.Linear(8, 3), x, y).healthy  # a finite one-layer model still is


def test_a_bad_seed_is_named_not_blamed_on_the_model(batch):
    """seed='a' said 'the model's forward and backward in train mode failed' (API fuzz)."""
    from initlab.errors import InitlabError

    for seed in ("a", 2**70, -1):
        with pytest.raises(InitlabError, match=r"^seed must be an integer in \[0, "):
            diagnose(mlp("relu", "he_normal", 2, 16), *batch, seed=seed)


def test_dead_units_are_told_apart_under_no_grad_too():
    """dies_at_zero took a gradient: under torch.no_grad the first diagnosis of a session
    raised 'element 0 of tensors does not require grad' (diff review)."""
    from initlab.activations import dies_at_zero

    dies_at_zero.cache_clear()
    with torch.no_grad():
        assert dies_at_zero("relu") and not dies_at_zero("tanh")
    dies_at_zero.cache_clear()
    with torch.inference_mode():
        assert dies_at_zero("relu")


def test_the_profiles_mark_a_zero_inits_exact_zeros_on_the_log_scale(batch):
    """Log axes drop zeros: the zeros curve of the classic lab was in the legend and in no
    panel (a student saw He and Glorot only)."""
    from matplotlib.figure import Figure

    from initlab.probe.plots import draw_profiles

    zeros = diagnose(mlp("relu", "zeros", 3, 32), *batch, label="zeros")
    he = diagnose(mlp("relu", "he_normal", 3, 32), *batch, label="he_normal")
    axes = list(Figure().subplots(1, 4))
    draw_profiles(axes, {"zeros": zeros, "he_normal": he})
    activation = axes[1]  # zeros: every hidden activation is 0
    marked = [line for line in activation.get_lines() if line.get_marker() == "v"]
    assert len(marked) == 1 and list(marked[0].get_xdata()) == [1, 2, 3]
    drawn = [line.get_ydata() for line in activation.get_lines() if line.get_marker() == "o"]
    lowest = np.nanmin(np.concatenate([np.asarray(y, dtype=float) for y in drawn]))
    assert 0 < marked[0].get_ydata()[0] <= lowest  # on the panel, below every curve
    assert marked[0].get_ydata()[0] == activation.get_ylim()[0]  # on its lower edge
    assert "exactly 0" in activation.get_xlabel()
    he_only = list(Figure().subplots(1, 4))
    draw_profiles(he_only, {"he_normal": he})
    assert not [line for ax in he_only for line in ax.get_lines() if line.get_marker() == "v"]
    assert he_only[1].get_xlabel() == "layer index"


@pytest.mark.parametrize(
    ("init", "bias"), [("constant(value=0.01)", "zeros"), ("he_normal", -10.0)], ids=["w", "b"]
)
def test_mean_field_is_not_quoted_for_weights_or_biases_off_zero_mean(batch, init, bias):
    """q (MF) read 0.0164, 5e-5, 1.7e-7 against a measured 6.1, 2.5, 1.0 for constant(0.01),
    and 200 against 100 for biases of -10: the theory's weights and biases are zero-mean."""
    d = diagnose(mlp("relu", init, 3, 64, bias=bias), *batch)
    assert d.layers["q_pred"].isna().all()
    narrow = diagnose(mlp("relu", init, 3, 12, bias=bias), *batch)  # 12 units: under 16
    assert narrow.layers["q_pred"].isna().all()
    fine = diagnose(mlp("relu", "he_normal", 3, 64, bias="uniform(a=-0.1, b=0.1)"), *batch)
    assert fine.layers["q_pred"].notna().all()  # random zero-mean biases: the theory's
