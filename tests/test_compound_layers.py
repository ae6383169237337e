"""RNNs and multi-head attention get a scheme on their input matrices, Keras' rules elsewhere."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import initlab
from initlab import initialize
from initlab.config import RunConfig
from initlab.coverage import untouched_weights

EPS = torch.finfo(torch.float32).eps


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_std(t: torch.Tensor, expected: float) -> None:
    """The sample std of n draws is within 5 standard errors (expected / sqrt(2n))."""
    n = t.numel()
    assert float(t.detach().std()) == pytest.approx(expected, rel=5 / math.sqrt(2 * n))


def assert_orthonormal_columns(w: torch.Tensor) -> None:
    """W^T W = I for a tall W (rows ≥ cols), to float32 rounding over the rows summed."""
    w = w.detach().double()
    gram = w.T @ w
    tol = 10 * EPS * w.shape[0]
    assert torch.allclose(gram, torch.eye(w.shape[1], dtype=torch.float64), atol=tol)


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 24)
        self.lstm = nn.LSTM(24, 64, num_layers=2, bidirectional=True)
        self.head = nn.Linear(128, 5)


def test_lstm_input_kernel_gets_the_scheme_recurrent_kernel_orthogonal_forget_bias_one():
    model = Tagger()
    record = initialize(model, "glorot_uniform", generator=gen())
    lstm, hidden = model.lstm, 64
    for layer, fan_in in (("l0", 24), ("l1", 128)):
        for suffix in ("", "_reverse"):
            w_ih = getattr(lstm, f"weight_ih_{layer}{suffix}")
            limit = math.sqrt(6 / (fan_in + 4 * hidden))  # Keras kernel [in, 4H]
            assert float(w_ih.detach().abs().max()) <= limit
            assert_std(w_ih, limit / math.sqrt(3))
            assert_orthonormal_columns(getattr(lstm, f"weight_hh_{layer}{suffix}"))
            b_ih = getattr(lstm, f"bias_ih_{layer}{suffix}").detach()
            b_hh = getattr(lstm, f"bias_hh_{layer}{suffix}").detach()
            # Keras' single bias with unit_forget_bias: gates i, f, g, o → 0, 1, 0, 0
            expected = torch.zeros(4 * hidden)
            expected[hidden : 2 * hidden] = 1
            assert torch.equal(b_ih + b_hh, expected)
    row = next(r for r in record.rows if r["layer"] == "lstm")
    assert (row["fan_in"], row["fan_out"]) == (24, 256)
    assert row["bias"] == "zeros, forget gate 1"
    assert row["parameters"]["weight_hh_l1_reverse"] == "orthogonal(gain=1.0)"


def test_orthogonal_recurrence_keeps_the_state_norm_of_a_linear_rnn():
    """Why the recurrent kernel is orthogonal: h ← W h neither vanishes nor explodes."""
    rnn = nn.RNN(8, 32, nonlinearity="tanh")
    initialize(rnn, "he_normal", generator=gen(1))
    w = rnn.weight_hh_l0.detach().double()
    h = torch.randn(32, dtype=torch.float64, generator=gen(2))
    start = float(h.norm())
    for _ in range(100):
        h = w @ h
    assert float(h.norm()) == pytest.approx(start, rel=100 * 10 * EPS * 32)


@pytest.mark.parametrize(("module", "gates"), [(nn.LSTM(8, 32), 4), (nn.GRU(8, 32), 3)])
def test_a_gated_recurrent_kernel_is_one_orthogonal_draw_as_keras_makes_it(module, gates):
    """Keras draws its ``[H, gates·H]`` recurrent kernel orthogonal as a whole, so no gate's
    own ``H × H`` block is orthogonal: the kernel's H orthonormal columns hold a squared norm
    of H in all, ``H / gates`` per block in expectation, so a block's mean squared singular
    value is about ``1 / gates`` (1 only for the plain RNN)."""
    initialize(module, "glorot_uniform", generator=gen(3))
    w = module.weight_hh_l0.detach().double()
    for block in w.split(32):
        mean_square = float((torch.linalg.svdvals(block) ** 2).mean())
        # not a mean of i.i.d. draws: the block's share of a random rank-H projection of
        # R^n (n = gates·H), of sd sqrt(2 (n−H)² / (n² (n+2) (n−1))): ≈ 4.5 sd (LSTM), 5 (GRU)
        assert mean_square == pytest.approx(1 / gates, abs=0.15 / gates)


@pytest.mark.parametrize(
    ("module", "b_hh_follows_policy"),
    [(nn.GRU(6, 10), True), (nn.GRUCell(6, 10), True), (nn.RNNCell(6, 10), False)],
)
def test_constant_bias_goes_to_b_ih_and_to_a_grus_recurrent_bias(module, b_hh_follows_policy):
    initialize(module, "he_uniform", bias=0.25, generator=gen())
    params = dict(module.named_parameters())
    b_ih = next(v for k, v in params.items() if k.startswith("bias_ih"))
    b_hh = next(v for k, v in params.items() if k.startswith("bias_hh"))
    assert torch.all(b_ih == 0.25)
    assert torch.all(b_hh == (0.25 if b_hh_follows_policy else 0.0))


def test_lstm_constant_bias_keeps_the_forget_gate_at_one():
    cell = nn.LSTMCell(6, 10)
    initialize(cell, "he_uniform", bias=0.25, generator=gen())
    b = (cell.bias_ih + cell.bias_hh).detach()
    assert torch.all(b[10:20] == 1.0) and torch.all(b[:10] == 0.25) and torch.all(b[20:] == 0.25)


def test_torch_default_bias_is_the_rnns_own_uniform_without_a_forget_gate_one():
    lstm = nn.LSTM(4, 200)
    initialize(lstm, "he_normal", bias="torch_default", generator=gen())
    bound = 1 / math.sqrt(200)
    for b in (lstm.bias_ih_l0, lstm.bias_hh_l0):
        assert float(b.detach().abs().max()) <= bound
        assert_std(b, bound / math.sqrt(3))


def test_bias_keep_and_default_scheme_leave_the_rnn_as_built():
    lstm = nn.LSTM(4, 16)
    built = {k: v.detach().clone() for k, v in lstm.state_dict().items()}
    initialize(lstm, "he_normal", bias="keep", generator=gen())
    for name in ("bias_ih_l0", "bias_hh_l0"):
        assert torch.equal(getattr(lstm, name), built[name])
    assert not torch.equal(lstm.weight_ih_l0, built["weight_ih_l0"])
    fresh = nn.LSTM(4, 16)
    before = {k: v.detach().clone() for k, v in fresh.state_dict().items()}
    record = initialize(fresh, "default", bias="zeros")
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())
    assert set(record.rows[0]["parameters"].values()) == {"kept"}


def test_a_layer_plan_can_name_an_rnn_and_leaves_unnamed_ones_as_built():
    model = Tagger()
    before = model.lstm.weight_hh_l0.detach().clone()
    record = initialize(model, {"head": "zeros"})
    assert torch.equal(model.lstm.weight_hh_l0, before)
    assert {"layer": "lstm", "type": "LSTM", "reason": "not in the plan"} in record.skipped
    initialize(model, {"lstm": "zeros"})
    assert torch.count_nonzero(model.lstm.weight_ih_l0) == 0


def test_attention_sets_query_key_value_each_with_its_own_fans():
    attn = nn.MultiheadAttention(64, 4)
    record = initialize(attn, "glorot_uniform", generator=gen())
    limit = math.sqrt(6 / (64 + 64))  # each E × E map, not the packed [3E, E] tensor
    for chunk in attn.in_proj_weight.detach().chunk(3):
        assert float(chunk.abs().max()) <= limit
        assert_std(chunk, limit / math.sqrt(3))
    assert torch.count_nonzero(attn.in_proj_bias) == 0
    assert record.rows[0]["parameters"]["in_proj_weight"] == (
        "glorot_uniform (query, key, value each)"
    )


def test_attention_with_kdim_vdim_uses_their_fans_and_names_what_it_leaves():
    attn = nn.MultiheadAttention(32, 4, kdim=200, vdim=8, add_bias_kv=True)
    bias_k = attn.bias_k.detach().clone()
    initialize(attn, "he_normal", generator=gen())
    assert_std(attn.q_proj_weight, math.sqrt(2 / 32))  # fan_in E
    assert_std(attn.k_proj_weight, math.sqrt(2 / 200))
    assert torch.equal(attn.bias_k, bias_k)
    assert untouched_weights(attn) == ["bias_k, bias_v (MultiheadAttention's own parameters)"]


def test_the_note_on_a_model_s_own_parameters_agrees_with_how_many_they_are():
    """``pos, cls (Net's own parameters) keeps`` read as one thing; one module's several
    parameters (``blocks.0.attn (MultiheadAttention: bias_k, bias_v)``) do keep one verb."""
    from initlab.model_notes import plural

    net = nn.Module()
    net.pos, net.cls = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(3))
    assert untouched_weights(net) == ["pos, cls (Module's own parameters)"]
    assert plural(untouched_weights(net))
    net.cls = None
    assert untouched_weights(net) == ["pos (Module's own parameter)"]
    assert not plural(untouched_weights(net))
    block = nn.Sequential(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    assert not plural(untouched_weights(block))


def test_two_schemes_now_differ_on_an_lstm_model_and_the_plan_says_how():
    a, b = Tagger(), Tagger()
    b.load_state_dict(a.state_dict())
    initialize(a, "he_normal", generator=gen())
    initialize(b, "glorot_uniform", generator=gen())
    assert a.lstm.weight_ih_l0.std() > 1.5 * b.lstm.weight_ih_l0.std()  # sqrt(2/24) vs ~0.14
    rows = initlab.plan(Tagger(), "he_normal").parameters
    rules = {row["name"]: row["rule"] for row in rows}
    assert {row["role"] for row in rows if row["name"].startswith("lstm.")} == {"recurrent"}
    assert rules["lstm.weight_ih_l0"] == "he_normal"
    assert rules["lstm.weight_hh_l0"] == "orthogonal(gain=1.0)"
    assert rules["lstm.bias_ih_l0"] == "zeros, forget gate 1"
    assert rules["embed.weight"] == "kept"
    assert untouched_weights(Tagger()) == ["embed (Embedding: weight)"]


class Unrolled(nn.Module):
    """A GRU beside Linear layers; the forward reads only the Linear layers (LSUV's pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.rnn = (
            nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)),
            nn.GRU(8, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_lsuv_gives_an_rnn_its_orthonormal_start():
    model = Unrolled()
    initialize(model, "lsuv", data=torch.randn(64, 8, generator=gen()), generator=gen())
    assert_orthonormal_columns(model.rnn.weight_ih_l0)  # [48, 8]: tall


def test_a_user_models_run_key_changes_with_initlabs_rules_for_its_layers(monkeypatch, tmp_path):
    factory = tmp_path / "m.py"
    factory.write_text("import torch\ndef build():\n    return torch.nn.LSTM(2, 2)\n")
    user, builtin = RunConfig(model=f"{factory}:build"), RunConfig()
    keys = user.key(), builtin.key()
    monkeypatch.setattr("initlab.config.USER_MODEL_RULES", 99)
    assert user.key() != keys[0]
    assert builtin.key() == keys[1]


def test_the_forget_gate_bias_is_what_lets_an_lstm_remember_the_first_token():
    """docs/your-model.md: labels from step 0 of 12; with Keras' forget-gate bias 1 the LSTM
    learns, with PyTorch's biases (forget gate ≈ 0.5) the same kernels stay at chance (1/3).
    Measured over 5 seeds: 0.70–0.995 against 0.34–0.37 (6 runs: about 5 s)."""
    root = Path(__file__).resolve().parents[1] / "examples"
    runs = {
        bias: initlab.compare(
            ["glorot_uniform"], seeds=3, model=f"{root}/my_models.py:lstm_classifier",
            data=f"{root}/my_data.py:first_token", bias=bias, optimizer="adam", lr=0.01,
            epochs=3,
        ).runs["test_accuracy"]
        for bias in ("zeros", "torch_default")
    }  # fmt: skip
    assert runs["torch_default"].max() < 0.5
    assert runs["zeros"].mean() > runs["torch_default"].mean() + 0.25


def test_the_doctors_plan_gives_rnns_keras_rules_and_applies_them():
    from initlab.doctor.plan import recommend

    class Reader(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.lstm, self.head = nn.Embedding(9, 8), nn.LSTM(8, 16), nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(self.embed(x))[0][-1])

    model = Reader()
    plan = recommend(model, torch.randint(0, 9, (5, 4), generator=gen()))
    assert dict(plan) == {"lstm": "glorot_uniform", "head": "glorot_uniform"}
    initialize(model, plan, generator=gen())
    assert torch.all(model.lstm.bias_ih_l0.detach()[16:32] == 1)


def test_the_doctors_plan_candidate_takes_the_last_linear_as_output_whatever_the_order():
    """Head registered before the LSTM: the output layer is still the Linear head."""
    from initlab.doctor.candidates import plan_candidate
    from initlab.doctor.plan import Plan as DoctorPlan
    from initlab.doctor.plan import PlanEntry

    entries = [
        PlanEntry("head", "Linear", "sigmoid", "glorot_normal", ""),
        PlanEntry("lstm", "LSTM", "gates", "glorot_uniform", ""),
    ]
    candidate = plan_candidate("plan", DoctorPlan(entries), RunConfig(), "why")
    assert candidate.settings == {"init": "glorot_uniform", "output_init": "glorot_normal"}


class Encoder(nn.Module):
    """Token ids → a 1-layer TransformerEncoder → class logits of the first position."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(8, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.embed(x))[:, 0])


def test_an_attentions_out_proj_which_no_hook_sees_gets_a_plan_lsuv_start_and_no_fixup_bias():
    """MultiheadAttention reads out_proj.weight itself: the doctor called it 'not run' (left
    as built), LSUV failed ('a layer was not reached'), fixup added a bias that never acts."""
    from initlab.doctor.plan import recommend

    x = torch.randint(0, 8, (16, 6), generator=gen())
    plan = dict(recommend(Encoder(), x))
    assert plan["enc.layers.0.self_attn.out_proj"] == "glorot_uniform"
    model = Encoder()
    initialize(model, "lsuv", data=x, generator=gen())
    assert_orthonormal_columns(model.enc.layers[0].self_attn.out_proj.weight)  # its start
    rows = initlab.plan(Encoder(), "he_normal", residual_init="fixup", data=x).parameters
    names = {row["name"] for row in rows}
    assert "enc.layers.0.linear1.fixup_bias_in" in names
    assert "enc.layers.0.self_attn.out_proj.fixup_bias_in" not in names


PARAMETRIZED = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class Reader(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = weight_norm(nn.LSTM(4, 8, batch_first=True), name="weight_ih_l0")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def build():
    return Reader()


def normed():
    return nn.Sequential(nn.Flatten(), weight_norm(nn.Linear(20, 8)), nn.ReLU(), nn.Linear(8, 3))


def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 5, 4, generator=g), torch.randint(0, 3, (96,), generator=g)
    return x[:64], y[:64], x[64:], y[64:]
"""


def test_parametrized_layers_are_refused_in_one_line_before_training(tmp_path, capsys):
    """weight_norm makes a weight computed: filling it changed nothing (the record said
    he_normal), and training crashed in deepcopy on every run, default included."""
    from initlab.cli import main
    from initlab.errors import InitlabError

    linear = nn.utils.parametrizations.weight_norm(nn.Linear(8, 8))
    with pytest.raises(InitlabError, match=r"weight is parametrized"):
        initialize(linear, "he_normal")
    initialize(linear, "default")  # as built: nothing to refuse
    (tmp_path / "m.py").write_text(PARAMETRIZED)
    spec = ["--model", f"{tmp_path}/m.py:build", "--data", f"{tmp_path}/m.py:data"]
    for init in ("default", "he_normal"):
        out = tmp_path / init
        argv = ["compare", *spec, "--inits", init, "--epochs", "1", "--seeds", "1"]
        assert main([*argv, "--out", str(out)]) == 2
        assert not out.exists()
    assert "cannot be copied after a forward pass" in capsys.readouterr().err
    spec[1] = f"{tmp_path}/m.py:normed"  # copyable: its second init is the one refused
    argv = ["compare", *spec, "--inits", "default,he_normal", "--epochs", "1", "--seeds", "1"]
    assert main(argv) == 2
    assert "1: weight is parametrized" in capsys.readouterr().err


def test_a_norm_its_factory_zeroed_is_named_as_kept():
    """torchvision's zero_init_residual sets a branch's last BatchNorm scale to 0; the note
    on what every run keeps as built left it out, as if it held every framework's 1."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.LayerNorm(2))
    assert untouched_weights(model) == []  # scale 1, shift 0: not a gap
    nn.init.zeros_(model[1].weight)
    assert untouched_weights(model) == ["1 (BatchNorm2d: weight)"]  # its shift is still 0
    nn.init.constant_(model[3].bias, 0.5)
    assert untouched_weights(model)[1] == "3 (LayerNorm: bias)"


def test_torch_default_bias_of_an_attention_is_zero_as_its_constructor_sets_it():
    """nn.MultiheadAttention's _reset_parameters sets in_proj_bias and out_proj.bias to 0;
    torch_default gave them nn.Linear's U(±1/sqrt(fan_in))."""
    built = nn.MultiheadAttention(32, 4)
    assert not built.in_proj_bias.any() and not built.out_proj.bias.any()  # PyTorch's own
    attn = nn.MultiheadAttention(32, 4)
    with torch.no_grad():
        attn.in_proj_bias.fill_(1.0)
        attn.out_proj.bias.fill_(1.0)
    record = initialize(nn.Sequential(attn), "glorot_uniform", bias="torch_default")
    assert not attn.in_proj_bias.any() and not attn.out_proj.bias.any()
    assert any("as nn.MultiheadAttention sets them" in str(r.get("bias")) for r in record.rows)
