"""Learning-rate schedules, warmup and per-model gradient clipping: the factor's formula,
the clipping rule, the stack against a plain PyTorch loop with LambdaLR and
clip_grad_norm_, and the settings checked before anything trains."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.cli import main
from initlab.config import RunConfig
from initlab.data import load
from initlab.errors import InitlabError
from initlab.store import open_store
from initlab.train.engine import train_stack
from initlab.train.grouping import group_key
from initlab.train.schedule import Member, StackSettings, clip_per_model, lr_factor, steps_per_epoch
from initlab.train.seeding import make_generator

EPS = torch.finfo(torch.float32).eps


def test_warmup_is_linear_then_each_schedule_has_its_shape():
    total, warmup = 110, 10
    assert [lr_factor(t, total, "cosine", warmup) for t in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, total, "cosine", warmup) == 1.0  # the first step after warmup
    assert lr_factor(60, total, "cosine", warmup) == pytest.approx(0.5, abs=1e-15)
    assert lr_factor(60, total, "linear", warmup) == pytest.approx(0.5, abs=1e-15)
    assert lr_factor(109, total, "linear", warmup) == pytest.approx(0.01, abs=1e-15)
    assert all(lr_factor(t, total, "constant", warmup) == 1.0 for t in range(10, total))
    assert lr_factor(50, 20, "cosine", 30) == 1.0  # warmup longer than training: then 1


def test_the_cosine_schedule_is_torchs_cosine_annealing_to_zero():
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    for t in range(40):
        assert lr_factor(t, 40, "cosine") == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        opt.step()
        sched.step()


def test_each_models_gradient_is_clipped_on_its_own_as_clip_grad_norm_does():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 5, 4, generator=gen), torch.randn(3, 4, generator=gen)]
    grads[0][0] *= 100  # model 0: a large gradient; model 2 small enough to be kept
    grads[0][2] *= 1e-3
    grads[1][2] *= 1e-3
    alone = [[g[m].clone() for g in grads] for m in range(3)]
    kept = [g[2].clone() for g in grads]
    norms = clip_per_model([grads[0], None, grads[1]], max_norm=1.0)
    for m in range(3):
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in alone[m]]
        for p, g in zip(params, alone[m], strict=True):
            p.grad = g
        before = torch.nn.utils.clip_grad_norm_(params, 1.0)
        assert float(norms[m]) == pytest.approx(float(before), rel=1e-5)
        for g, p in zip(grads, params, strict=True):
            torch.testing.assert_close(g[m], p.grad, rtol=10 * EPS, atol=10 * EPS)
    assert all(torch.equal(g[2], k) for g, k in zip(grads, kept, strict=True))


def test_clipping_takes_scalar_parameters_too():
    """A gate of skipinit/fixup is one number per model, gradients ``[M]``: ``flatten(1)``
    failed every run that had one."""
    gate = torch.tensor([30.0, 0.1])
    weight = torch.zeros(2, 3, 3)
    norms = clip_per_model([gate, weight], max_norm=1.0)
    torch.testing.assert_close(norms, torch.tensor([30.0, 0.1]))
    assert float(gate[0]) == pytest.approx(1.0, rel=1e-5) and float(gate[1]) == pytest.approx(0.1)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_the_stack_trains_as_a_plain_loop_with_lambda_lr_and_clip_grad_norm(kind):
    """Two models with their own rates; warmup, cosine decay and a clip that binds."""
    data = load("digits")
    torch.manual_seed(0)
    models = [mlp() for _ in range(2)]
    plain = [copy.deepcopy(m) for m in models]
    epochs, warmup, clip = 2, 7, 0.5
    shared = StackSettings(optimizer=kind, epochs=epochs, lr_schedule="cosine", warmup_steps=warmup,
                clip_norm=clip, strategy="stacked")  # fmt: skip
    members = [Member(seed=0, lr=0.05), Member(seed=1, lr=0.2)]
    if kind == "adam":
        members = [Member(seed=0, lr=0.002), Member(seed=1, lr=0.01)]
    train_stack(models, data, shared, members, write_back=True)
    n = data.num_train
    total = epochs * steps_per_epoch(n, 32)
    for member, model, trained in zip(members, plain, models, strict=True):
        make = torch.optim.SGD if kind == "sgd" else torch.optim.Adam
        opt = make(model.parameters(), lr=member.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: lr_factor(t, total, "cosine", warmup)
        )
        gen = make_generator(member.seed, "data")
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=gen).split(32):
                loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                sched.step()
        tol = 50 * EPS * math.sqrt(n * epochs)
        for got, want in zip(trained.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_runs_with_other_step_rules_never_share_a_stack_and_keys_stay():
    base = RunConfig(dataset="digits")
    assert group_key(base) != group_key(base.replace(lr_schedule="cosine"))
    assert group_key(base) != group_key(base.replace(warmup_steps=10))
    assert group_key(base) != group_key(base.replace(clip_norm=1.0))
    assert base.key() == RunConfig(dataset="digits", lr_schedule="constant").key()


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("lr_schedule", "cosin", "did you mean 'cosine'"),
        ("warmup_steps", -1, "warmup_steps must be"),
        ("clip_norm", 0.0, "clip_norm must be"),
    ],
)
def test_bad_step_rules_are_one_line_before_anything_trains(setting, value, said):
    with pytest.raises(InitlabError, match=said):
        initlab.compare(["he_normal"], seeds=1, dataset="digits", epochs=1, **{setting: value})


def test_the_cli_takes_the_step_rules_and_refuses_a_bad_one(tmp_path, capsys):
    args = ["compare", "--data", "digits", "--inits", "he_normal", "--seeds", "1"]
    args += ["--epochs", "1", "--hidden", "16", "--track", "off", "--workers", "1"]
    assert main([*args, "--lr-schedule", "linear", "--clip-norm", "0"]) == 2
    assert "--clip-norm must be" in capsys.readouterr().err
    out = tmp_path / "out"
    rules = ["--lr-schedule", "cosine", "--warmup-steps", "5", "--clip-norm", "1"]
    assert main([*args, *rules, "--out", str(out)]) == 0
    with open_store(out) as store:
        runs = store.results().runs
    assert runs["lr_schedule"].tolist() == ["cosine"] and runs["clip_norm"].tolist() == [1.0]


def test_a_warmup_as_long_as_the_training_is_named_before_it_trains():
    """20 warmup steps on a run of 10: the rate never reached lr and every schedule
    trained alike, unsaid."""
    with pytest.warns(UserWarning, match=r"warmup_steps=50 is at least the 10 optimizer steps"):
        initlab.compare(
            ["he_normal"], seeds=1, dataset="digits", epochs=1, limit_train=320, hidden=(8,),
            track="off", warmup_steps=50,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"clip_norm": -1.0}, "clip_norm must be"),  # it ran gradient ascent
        ({"lr_schedule": "cosin"}, "did you mean 'cosine'"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lr": -0.1}, "lr must be"),
    ],
)
def test_train_model_checks_its_settings_before_a_step(setting, said):
    from initlab.train import train_model

    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(InitlabError, match=said):
        train_model(model, load("digits"), epochs=1, **setting)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
