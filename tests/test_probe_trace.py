"""initlab.probe.trace: the one activation tracer, shared by the probe and the doctor."""

import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.activations import infer_activation
from initlab.coverage import initializable_layers
from initlab.doctor import find_activations
from initlab.probe import diagnose
from initlab.probe.hooks import collect
from initlab.probe.trace import trace


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class Mixed(nn.Module):
    """A functional relu behind dropout, a hand-written swish, a clamp, a cumsum."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.d, self.e = nn.Linear(16, 16), nn.Linear(16, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.a(x)))
        h = self.b(h)
        h = self.c(h * torch.sigmoid(h))
        h = self.d(torch.clamp(h, min=0.0))  # relu, written otherwise
        return self.e(torch.cumsum(h, dim=1))


def test_the_probe_and_the_doctor_see_the_same_activations():
    model, x = Mixed(), torch.randn(64, 8, generator=gen())
    found, _ = find_activations(model, x, initializable_layers(model))
    assert found == {"a": "relu", "b": "silu", "c": "relu", "d": "unknown", "e": "linear"}
    table = diagnose(model, x).layers.set_index("layer")["activation"]
    shown = {k: v if isinstance(v, str) else None for k, v in table.items()}
    assert shown == {**found, "d": None, "e": None}  # None: unknown, and the output layer


def test_z_and_phi_are_the_activation_functions_input_and_output():
    model, x = Mixed(), torch.randn(64, 8, generator=gen())
    a, b, c, d, _ = collect(model, x)
    assert torch.equal(a.post, F.relu(a.pre))  # before the dropout (relu is exact)
    assert a.pre.shape == (64, 16) and (a.post == 0).float().mean() < 0.75
    atol = 50 * torch.finfo(b.pre.dtype).eps * float(b.pre.abs().max())
    torch.testing.assert_close(b.post, F.silu(b.pre), rtol=1e-5, atol=atol)  # the product
    assert torch.equal(c.post, d.input)  # clamp, inferred: phi(z) is what d received
    assert d.activation is None and d.post.shape == d.pre.shape


def test_inference_needs_exactly_one_fit():
    z = torch.randn(256, 8, generator=gen())
    assert infer_activation(z, torch.tanh(z)) == "tanh"
    assert infer_activation(z, z.clamp(min=0)) == "relu"
    assert infer_activation(z, z.cumsum(1)) is None
    zeros = torch.zeros(4, 8)
    assert infer_activation(zeros, zeros) is None  # relu, tanh, linear, ... all fit 0
    assert infer_activation(z.abs(), z.abs()) is None  # relu = leaky_relu = linear on z >= 0


class TwoCalls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared, self.out = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.shared(F.gelu(self.shared(x)))))


def test_each_call_is_traced_and_the_model_is_left_alone():
    model, x = TwoCalls(), torch.randn(4, 8, generator=gen())
    calls, output = trace(model, x)
    assert [(c.name, c.activation) for c in calls] == [
        ("shared", "gelu"),
        ("shared", "tanh"),
        ("out", "linear"),
    ]
    assert output.shape == (4, 2) and calls[2].post == (None, None)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    found, _ = find_activations(model, x, initializable_layers(model))
    assert found == {"shared": "gelu", "out": "linear"}  # the first call decides
    assert [layer.name for layer in collect(model, x)] == ["shared", "shared[2]", "out"]


def test_zero_outputs_met_by_an_unknown_function_guess_nothing():
    model = Mixed()
    initlab.initialize(model, "zeros")
    found, _ = find_activations(
        model, torch.randn(8, 8, generator=gen()), initializable_layers(model)
    )
    assert found["c"] == "unknown"  # clamp of all zeros fits relu, tanh, linear, ... alike
    assert found["a"] == "relu"  # a named function is read by its name, zeros or not


class Attending(nn.Module):
    """A projection, self-attention called directly (its ``out_proj`` is never called as a
    module), a residual sum and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        out, _ = self.attn(h, h, h)
        return self.head(h + out).mean(1)


def test_an_attention_output_projection_is_a_row_read_from_the_attention_call():
    torch.manual_seed(0)
    model, x = Attending(), torch.randn(8, 5, 6, generator=gen())
    layers = collect(model, x)
    names = ["inp", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "head"]
    assert [t.name for t in layers] == names  # tests/test_probe_projections.py: q, k, v
    inp, attn = layers[0], layers[4]
    assert attn.module is model.attn.out_proj and attn.inside == "MultiheadAttention"
    with torch.no_grad():
        expected, _ = model.attn(inp.post, inp.post, inp.post)
    # the same attention on the same input: z is its output (rounding of one kernel call)
    atol = 50 * torch.finfo(expected.dtype).eps * float(expected.abs().max())
    torch.testing.assert_close(attn.pre, expected, rtol=1e-5, atol=atol)
    # dL/dW of the out_proj weight the attention read, as autograd gives it directly
    v = torch.randn(8, 3, generator=gen(0))
    (direct,) = torch.autograd.grad((model(x) * v).sum(), model.attn.out_proj.weight)
    assert attn.weight_grad is not None
    torch.testing.assert_close(attn.weight_grad, direct, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # nothing written
    table = diagnose(model, x).layers.set_index("layer")
    assert table.loc["attn.out_proj", "type"] == "NonDynamicallyQuantizableLinear"
    assert table["q_pred"].isna().all()  # mean-field theory is not for attention


class _PreNorm(nn.Module):
    """``x + fc2(gelu(fc1(ln(x))))`` twice, then a norm and a head: every branch ends in a
    layer whose output joins the stream with no nonlinearity."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.lns = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.fc1 = nn.ModuleList(nn.Linear(d, 2 * d) for _ in range(2))
        self.fc2 = nn.ModuleList(nn.Linear(2 * d, d) for _ in range(2))
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(2):
            x = x + self.fc2[k](F.gelu(self.fc1[k](self.lns[k](x))))
        return self.head(self.lns[2](x))


def test_a_branch_end_joining_the_stream_is_linear_and_keeps_its_own_scale():
    """The sum went on to a LayerNorm and the next layer: its input (std 1) was read as the
    branch end's activation, so a branch 1e-3 of the stream looked healthy, and the doctor
    gave the layer LSUV ('unknown')."""
    torch.manual_seed(0)
    model = _PreNorm()
    initlab.initialize(model, "normal(std=0.001)", output_init="same")
    layers, _ = trace(model, torch.randn(64, 16))
    ends = [layer for layer in layers if layer.name.startswith("fc2")]
    assert [layer.activation for layer in ends] == ["linear", "linear"]
    for layer in ends:
        assert torch.equal(layer.post[1], layer.pre[1])  # its own output: no function between
        assert layer.post[1].std() < 1e-3  # 1e-3 × 1e-3 of the stream, not the norm's 1
    assert (
        find_activations(model, torch.randn(8, 16), initializable_layers(model))[0]["fc2.0"]
        == "linear"
    )


class _Cell(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W, self.U = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.W(x) + self.U(x.flip(-1)))


class _PostActivation(nn.Module):
    """A ResNet v1 block, the sum written out of place or in place."""

    def __init__(self, in_place: bool) -> None:
        super().__init__()
        self.in_place = in_place
        self.c1, self.c2 = nn.Linear(4, 4), nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.c2(torch.relu(self.c1(x))))
        if self.in_place:
            out += x
        else:
            out = out + x
        return torch.relu(out)


def test_a_sum_of_two_layers_takes_the_activation_of_the_sum_either_way():
    """W x + U h: the second term saw the first closed by the same call and was called a
    branch end (linear); `out + x` then relu gave 'linear', `out += x` then relu 'relu'.
    An activation of a sum of layer outputs is each layer's: tanh(W x + U h) is tanh for
    both, as a ResNet's relu(bn2(conv2(.)) + shortcut(x)) is relu for both convolutions."""
    cell = _Cell()
    found, _ = find_activations(cell, torch.randn(8, 4), initializable_layers(cell))
    assert found == {"W": "tanh", "U": "tanh"}
    for in_place in (False, True):
        model = _PostActivation(in_place)
        found, _ = find_activations(model, torch.randn(8, 4), initializable_layers(model))
        assert found == {"c1": "relu", "c2": "relu"}, in_place


class _HandAttention(nn.Module):
    """Pre-norm blocks with q, k, v written by hand, then the same with the stream read by
    ``nn.MultiheadAttention`` (whose own function is neither a layer nor an activation)."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.up, self.down = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        att = (q @ k.transpose(-2, -1) / 4).softmax(-1)
        x = x + self.o(att @ v)
        x = x + self.down(F.gelu(self.up(self.ln2(x))))
        h = self.ln3(x)
        return x + self.mha(h, h, h, need_weights=False)[0]


def test_attention_products_make_q_k_v_linear_and_any_reader_of_the_stream_closes_a_join():
    """q and k met q @ k.T and v met att @ v: they were 'unknown' (LSUV in the plan), with
    the next LayerNorm's output (std 1) as their activation. ``down``'s sum met the MHA's
    own function next: 'unknown' too, where the same branch before a Linear was 'linear'."""
    torch.manual_seed(0)
    model, x = _HandAttention(), torch.randn(4, 6, 16)
    layers = {layer.name: layer for layer in trace(model, x)[0]}
    for name in ("q", "k", "v", "o", "down"):
        assert layers[name].activation == "linear", name
    q = layers["q"]
    assert torch.equal(q.post[1].reshape(q.pre[1].shape), q.pre[1])  # its own output
    assert torch.equal(layers["down"].post[1], layers["down"].pre[1])  # what the branch adds


class _ScaledJoin(nn.Module):
    """``relu((x + b(x)) / sqrt 2)``: the sum is scaled, then activated; and an RNN-like
    ``ih(x) + h @ U`` chunked into gates."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.b, self.ih, self.out = nn.Linear(d, d), nn.Linear(d, 4 * d), nn.Linear(d, 3)
        self.u = nn.Parameter(torch.randn(d, 4 * d) / d**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu((x + self.b(x)) / 2**0.5)
        i, f, g, o = (self.ih(x) + x @ self.u).chunk(4, -1)
        h = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f))
        return self.out(h)


def test_only_a_reader_of_the_stream_closes_a_join_as_linear():
    """After the join rule was widened, a scale before the ReLU and an RNN's chunk of
    W x + U h made those layers 'linear': they are not (the scale's ReLU comes later)."""
    layers = {layer.name: layer.activation for layer in trace(_ScaledJoin(), torch.randn(6, 8))[0]}
    assert layers["b"] != "linear" and layers["ih"] != "linear"


class PatchViT(nn.Module):
    """A ViT's stem: patch convolution, ``flatten(2).transpose(1, 2) + self.pos``, a norm,
    then an ``nn.MultiheadAttention`` reading it."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 2, stride=2)
        self.pos = nn.Parameter(torch.randn(1, 16, 16, generator=gen(1)))
        self.norm = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        h = self.norm(t)
        return self.head((t + self.attn(h, h, h, need_weights=False)[0]).mean(1))


def test_a_patch_embedding_plus_a_position_table_meets_the_attention_linearly():
    """A user's ViT: the sum with the position table and the attention's own function each
    left the patch convolution ``unknown``, which the doctor drew by LSUV."""
    model, x = PatchViT(), torch.randn(8, 1, 8, 8, generator=gen())
    found, _ = find_activations(model, x, initializable_layers(model))
    assert found["patch"] == "linear"
    stem = model.patch  # a tanh after the shift is the layer's; a shift by data is not
    model.forward = lambda x: torch.tanh(stem(x).flatten(2).transpose(1, 2) + model.pos).mean()
    assert find_activations(model, x, initializable_layers(model))[0]["patch"] == "tanh"
    data = model.pos.detach().clone()
    model.forward = lambda x: torch.tanh(stem(x).flatten(2).transpose(1, 2) + data).mean()
    assert find_activations(model, x, initializable_layers(model))[0]["patch"] == "unknown"
