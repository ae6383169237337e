"""Structure of orthogonal, identity, dirac, delta_orthogonal and sparse initializations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from initlab.errors import InitlabError
from initlab.initializers import Fans, get


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- orthogonal ------------------------------------------------------------------------------


@pytest.mark.parametrize("gain", [1.0, 1.41])
@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (16, 8, 3, 3), (64, 4, 3), (12, 12)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, gain):
    w = get("orthogonal", gain=gain)(torch.empty(shape), gen()).reshape(shape[0], -1) / gain
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    assert torch.allclose(gram, torch.eye(min(rows, cols)), atol=1e-5)


@pytest.mark.parametrize("shape", [(20, 50), (16, 8, 3, 3), (64, 4, 3)])
def test_orthogonal_std_is_gain_over_sqrt_of_the_larger_side(shape):
    """Sum of squares = gain²·min(rows, cols), so the RMS is gain / sqrt(max(rows, cols))."""
    init = get("orthogonal", gain=2.0)
    w = init(torch.empty(shape), gen())
    rms = float(w.double().pow(2).mean().sqrt())
    expected = init.std(Fans(1, 1), shape=shape)
    assert expected == pytest.approx(2.0 / math.sqrt(max(shape[0], math.prod(shape[1:]))))
    assert rms == pytest.approx(expected, rel=1e-5)


def test_orthogonal_std_from_fans_assumes_a_matrix():
    assert get("orthogonal").std(Fans(fan_in=50, fan_out=20)) == pytest.approx(1 / math.sqrt(50))


def test_orthogonal_is_haar_thanks_to_the_sign_fix():
    """Without ``q *= sign(diag(r))`` LAPACK's QR makes W[0, 0] < 0 almost always.

    With it, W[0, 0] is symmetric: over 500 draws the fraction of positive values is within
    5·sqrt(0.25/500) = 0.11 of one half.
    """
    g, init, w = gen(), get("orthogonal"), torch.empty(6, 6)
    signs = [float(init(w, g)[0, 0] > 0) for _ in range(500)]
    assert abs(sum(signs) / len(signs) - 0.5) < 5 * math.sqrt(0.25 / 500)


# ---- identity and dirac ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["identity", "eye"])
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_identity_is_a_scaled_rectangular_eye(name, shape):
    w = get(name, gain=2.0)(torch.empty(shape))
    assert torch.equal(w, 2.0 * torch.eye(*shape))


def test_identity_linear_layer_is_the_identity_map():
    x = torch.randn(10, 6, generator=gen())
    w = get("identity")(torch.empty(6, 6))
    assert torch.equal(F.linear(x, w), x)


@pytest.mark.parametrize(
    ("conv", "shape"),
    [(F.conv1d, (2, 4, 9)), (F.conv2d, (2, 4, 7, 6)), (F.conv3d, (2, 4, 5, 4, 3))],
)
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_dirac_conv_is_the_identity_map(conv, shape, kernel):
    x = torch.randn(shape, generator=gen())
    weight = get("dirac")(torch.empty(4, 4, *[kernel] * (len(shape) - 2)))
    assert torch.equal(conv(x, weight, padding=kernel // 2), x)


def test_dirac_grouped_conv_is_the_identity_map():
    x = torch.randn(2, 6, 8, 8, generator=gen())
    weight = get("dirac", groups=3)(torch.empty(6, 2, 3, 3))
    assert torch.equal(F.conv2d(x, weight, padding=1, groups=3), x)


def test_dirac_with_more_outputs_copies_inputs_then_zeros():
    x = torch.randn(2, 3, 8, generator=gen())
    y = F.conv1d(x, get("dirac")(torch.empty(5, 3, 3)), padding=1)
    assert torch.equal(y[:, :3], x) and torch.equal(y[:, 3:], torch.zeros(2, 2, 8))


# ---- delta_orthogonal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "centre"),
    [((8, 4, 3, 3), (1, 1)), ((6, 6, 4), (1,)), ((5, 2, 3, 5, 2), (1, 2, 0))],
)
def test_delta_orthogonal_structure(shape, centre):
    """An [out, in] matrix with Q^T Q = gain²·I at tap (k-1)//2, zeros everywhere else."""
    w = get("delta_orthogonal", gain=1.5)(torch.empty(shape), gen())
    q = w[(slice(None), slice(None), *centre)]
    assert torch.allclose(q.T @ q, 1.5**2 * torch.eye(shape[1]), atol=1e-5)
    rest = w.clone()
    rest[(slice(None), slice(None), *centre)] = 0
    assert int(rest.count_nonzero()) == 0


def test_delta_orthogonal_conv_is_an_isometry():
    """Each output pixel is Q·(input pixel), so per-pixel norms are multiplied by the gain."""
    x = torch.randn(3, 4, 9, 9, generator=gen(1))
    w = get("delta_orthogonal", gain=2.0)(torch.empty(8, 4, 3, 3), gen())
    y = F.conv2d(x, w, padding=1)
    assert torch.allclose(y.norm(dim=1), 2.0 * x.norm(dim=1), rtol=1e-5)


def test_delta_orthogonal_even_kernel_uses_jax_centre_not_pytorch_centre():
    w = get("delta_orthogonal")(torch.empty(4, 4, 4), gen())
    assert int(w[:, :, 1].count_nonzero()) > 0 and int(w[:, :, 2].count_nonzero()) == 0
    assert get("dirac")(torch.empty(4, 4, 4))[:, :, 2].count_nonzero() == 4


# ---- sparse ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "cols", "sparsity", "zeros"), [(100, 30, 0.25, 25), (15, 40, 0.1, 2), (9, 5, 0, 0)]
)
def test_sparse_zeroes_ceil_sparsity_rows_in_each_column(rows, cols, sparsity, zeros):
    w = get("sparse", sparsity=sparsity)(torch.empty(rows, cols), gen())
    assert (w == 0).sum(dim=0).tolist() == [zeros] * cols


def test_sparse_zero_pattern_follows_the_generator():
    make = lambda seed: get("sparse", sparsity=0.5)(torch.empty(20, 20), gen(seed)) == 0  # noqa: E731
    assert torch.equal(make(1), make(1))
    assert not torch.equal(make(1), make(2))


# ---- shape errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("identity", (3, 3, 3), "2-D"),
        ("eye", (4,), "2-D"),
        ("dirac", (4, 4), "3-D or 4-D or 5-D"),
        ("dirac", (4, 4, 3, 3, 3, 3), "3-D or 4-D or 5-D"),
        ("delta_orthogonal", (4, 4), "3-D or 4-D or 5-D"),
        ("delta_orthogonal", (4, 8, 3), "out_channels >= in_channels"),
        ("sparse", (4, 4, 3), "2-D"),
        ("orthogonal", (5,), ">= 2 dimensions"),
    ],
)
def test_shape_errors_name_the_scheme(name, shape, message):
    with pytest.raises(InitlabError, match=message) as err:
        get(name)(torch.empty(shape))
    assert str(err.value).startswith(f"{name}: ")


def test_dirac_groups_must_divide_the_outputs():
    with pytest.raises(InitlabError, match="groups=4 must divide"):
        get("dirac", groups=4)(torch.empty(6, 2, 3))


# ---- grouped convolutions: one draw per group ------------------------------------------------


def _depthwise() -> torch.nn.Conv1d:
    return torch.nn.Conv1d(16, 16, 5, padding=2, groups=16, bias=False)


@pytest.mark.parametrize("scheme", ["orthogonal", "delta_orthogonal"])
def test_a_depthwise_convs_channels_each_get_the_gain_as_their_norm(scheme):
    """One draw over a depthwise weight [16, 1, 5] flattened to [16, 5] gave the channels
    squared norms from 0.10 to 0.66 (orthogonal) and 0.002 to 0.24 (delta_orthogonal: one
    unit vector spread across the channels), so some channels started almost switched off;
    the variance through the layer was 0.26 of its input's."""
    from initlab.initializers import fans_of_module

    conv = _depthwise()
    get(scheme, gain=1.5)(conv.weight, gen(), fans=fans_of_module(conv))
    norms = conv.weight.detach().double().pow(2).sum(dim=(1, 2))
    assert torch.allclose(norms, torch.full((16,), 1.5**2, dtype=torch.float64), rtol=1e-5)
    x = torch.randn(256, 16, 64, generator=gen(1))
    ratio = float(conv(x)[..., 2:-2].pow(2).mean() / x.pow(2).mean())
    # white input: E[out²] = ||w_c||² E[x²] per channel; a mean of 256·60·16 squares that
    # overlap 5 taps at a time: relative standard error sqrt(2 · 5 / n)
    se = math.sqrt(2 * 5 / (256 * 60 * 16))
    assert ratio == pytest.approx(1.5**2, rel=4 * se)


@pytest.mark.parametrize("scheme", ["orthogonal", "delta_orthogonal"])
def test_each_group_is_orthogonal_on_its_own(scheme):
    from initlab.initializers import fans_of_module

    conv = torch.nn.Conv2d(8, 16, 3, groups=2, bias=False)  # blocks [8, 4, 3, 3]
    get(scheme)(conv.weight, gen(), fans=fans_of_module(conv))
    for block in conv.weight.detach().split(8):
        w = block.reshape(8, -1) if scheme == "orthogonal" else block[:, :, 1, 1]
        rows, cols = w.shape
        gram = w @ w.T if rows <= cols else w.T @ w
        assert torch.allclose(gram, torch.eye(min(rows, cols)), atol=1e-5)
    expected = get(scheme).std(fans_of_module(conv), shape=conv.weight.shape)
    if scheme == "orthogonal":  # per block [8, 36]: 1/sqrt(36), not 1/sqrt(max(16, 36))
        assert expected == pytest.approx(1 / 6)
        assert float(conv.weight.detach().double().pow(2).mean().sqrt()) == pytest.approx(1 / 6)


def test_an_ungrouped_draw_is_still_torchs_own():
    conv = torch.nn.Conv2d(4, 8, 3, bias=False)
    from initlab.initializers import fans_of_module

    ours = get("orthogonal")(torch.empty(8, 4, 3, 3), gen(5), fans=fans_of_module(conv))
    theirs = torch.nn.init.orthogonal_(torch.empty(8, 4, 3, 3), generator=gen(5))
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_fans_refuse_groups_that_are_not_a_positive_integer():
    with pytest.raises(InitlabError, match=r"Fans\.groups must be an integer >= 1"):
        Fans(4, 4, 0)


def test_dirac_on_a_grouped_convolution_is_its_identity_map():
    """dirac_ with PyTorch's default groups=1 set 2 of a groups=4 convolution's 8 taps."""
    import initlab

    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    initlab.initialize(conv, "dirac")
    assert int((conv.weight != 0).sum()) == 8
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(conv(x), x)  # float32 tolerances: a Winograd kernel rounds
