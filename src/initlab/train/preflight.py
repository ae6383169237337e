"""Check a run before anything trains: every mistake is one :class:`InitlabError` line.

:func:`preflight` resolves the device and precision, checks the data (finite inputs, a train
set of at least one batch), builds the model once on the CPU and runs it on two training
examples, then checks the output's shape against the task (:mod:`initlab.train.tasks`):

- classification: ``[B, C]`` with ``C == data.num_classes`` or at least ``max label + 1``;
- regression: ``[B, k]`` or ``[B]`` matching the targets' ``[B, k]`` / ``[B]``;
- sequence: ``[B, T, V]`` against targets ``[B, T]``, with ``V > max token``.

Nothing is trained and the caller's RNG is untouched.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import Tensor, nn

from initlab.computed_weights import copy_failure
from initlab.config import RunConfig
from initlab.errors import InitlabError, first_line, option
from initlab.models import check_float32
from initlab.task_names import CLASSIFICATION
from initlab.train.build import build_architecture, initialize_as_configured
from initlab.train.device import check_precision, resolve_device
from initlab.train.layout import layout_hint
from initlab.train.output_checks import check_output, note_probabilities
from initlab.train.schedule import note_long_warmup, steps_per_epoch
from initlab.train.tasks import resolve_task
from initlab.usercode.inprocess import shown_spec
from initlab.usercode.specs import is_user_spec

PROBE_EXAMPLES = 2


class ModelFailed(InitlabError):
    """The model raised when run on the data (:func:`failure_line` says what failed)."""


def preflight(config: RunConfig, data: object) -> nn.Module:
    """Raise :class:`InitlabError` (one line) if ``config`` cannot train on ``data``; the
    model it built and ran (on the CPU, as built, not initialized)."""
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    task = resolve_task(config.task, data)
    num_train, held = len(data.y_train), len(data.y_val)
    if num_train < config.batch_size:
        after = f" (after {held} held out for validation)" if held else ""
        raise InitlabError(
            f"the train set has {num_train} examples{after}, fewer than one batch of "
            f"{config.batch_size}; use a smaller {option('--batch-size')} or more training data"
        )
    check_finite(data)
    note_long_warmup(
        config.warmup_steps, config.epochs * steps_per_epoch(num_train, config.batch_size)
    )
    model = build_checked(config, data)
    check_trainable(model)
    check_embedding_init(config, model)
    out = probe_output(model, data)
    inferred = config.task == "auto" and is_user_spec(config.dataset)  # from the targets
    top = max((int(y.max()) for y in (data.y_val, data.y_test) if y.numel()), default=0)
    check_output(task, out, data.y_train, data.num_classes, inferred=inferred, top=top)
    check_differentiable(model, data)
    note_probabilities(task, out)
    check_copyable(model, data)
    return model


NOT_DIFFERENTIABLE = (
    "the model's output does not depend on its parameters through autograd (detached, cast "
    "to an integer type, or computed under torch.no_grad): no gradient would reach a layer; "
    "return the output as computed"
)
"""What a model whose output has no gradient is told (compare's preflight and diagnose)."""


def check_differentiable(model: nn.Module, data: object) -> None:
    """One line for a model whose output on two examples does not require grad while some
    of its parameters do: every run failed on its first backward ('element 0 of tensors does
    not require grad'), after the store was made."""
    if not any(p.requires_grad for p in model.parameters()):
        return
    x = data.x_train[:PROBE_EXAMPLES].cpu()
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        model.eval()
        out = run_watched(model, x, data)
    if isinstance(out, Tensor) and not out.requires_grad:
        raise InitlabError(NOT_DIFFERENTIABLE)


def check_trainable(model: nn.Module) -> None:
    """One line for a model whose every parameter is frozen (``requires_grad=False``): each
    run failed on its first backward ('element 0 of tensors does not require grad'), and
    the retry hint could not help."""
    parameters = list(model.parameters())
    if parameters and not any(p.requires_grad for p in parameters):
        raise InitlabError(
            f"every parameter of the model ({len(parameters)} tensors) is frozen "
            "(requires_grad=False): nothing would train; leave the layers under study "
            "trainable (initlab diagnose looks at a frozen model as it is)"
        )


def build_checked(config: RunConfig, data) -> nn.Module:
    """The model as built for ``data``; a model too large to allocate is one line naming
    the number of classes the labels imply (a stray label of 10**9 asks a built-in MLP for
    10**9 outputs)."""
    try:
        model = build_architecture(config, tuple(data.x_train.shape[1:]), data.num_classes)
    except (RuntimeError, MemoryError) as exc:
        if "allocate" not in str(exc) and not isinstance(exc, MemoryError):
            raise
        task = getattr(data, "task", CLASSIFICATION)
        classes = f" for {data.num_classes} classes" if task == CLASSIFICATION else ""
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        size = f" ({int(asked.group(1)) / 1e9:.3g} GB asked)" if asked else ""
        widths = list(config.hidden) if config.model == "mlp" and config.hidden else []
        wide = f" and hidden widths {widths}" if widths and max(widths) > 10**6 else ""
        raise InitlabError(
            f"the model{classes}{wide} does not fit in memory{size}; check "
            f"{'them' if wide else 'the labels'}: classes are numbered 0..K-1 and the "
            "largest label sets K"
        ) from None
    if is_user_spec(config.model):
        check_float32(model, config.model)  # it trains: float32 parameters
    return model


def check_copyable(model: nn.Module, data) -> None:
    """A model ``copy.deepcopy`` refuses after a training forward pass (a hook-based
    ``torch.nn.utils.weight_norm``/``spectral_norm`` or an RNN whose weights are
    parametrized keeps computed, non-leaf tensors) → one line saying what the copy's error
    was and, when the cause is recognizable, which layer and what to do
    (:func:`initlab.computed_weights.copy_failure`): each run trains copies of it."""
    try:
        with torch.random.fork_rng(devices=[]):
            model.train()
            model(data.x_train[:PROBE_EXAMPLES].cpu())
    except Exception:  # train mode on two examples may fail: the eval probe decides
        return
    finally:
        model.eval()
    try:
        copy.deepcopy(model)
    except RuntimeError as exc:
        why = "initlab trains copies of it"
        raise InitlabError(copy_failure(model, exc, " after a forward pass", why)) from None


def check_initializes(config: RunConfig, data) -> None:
    """Build and initialize the run's model once (seed 0's draws), for each distinct init
    of a comparison: a scheme the model cannot take (a parametrized layer, LSUV on a layer no
    pass reaches) or one that would change nothing (:func:`check_init_reaches`,
    :func:`check_embedding_init`) is one line before training, not a failed run; a residual
    rule that changes nothing is a note."""
    if (config.init, config.embedding_init, config.residual_init) == ("default", "default", "none"):
        return
    with torch.random.fork_rng(devices=[]):
        model = build_architecture(config, tuple(data.x_train.shape[1:]), data.num_classes)
        check_init_reaches(config, model)
        check_embedding_init(config, model)
        initialize_as_configured(model, config, data)  # a rule that changes nothing notes it


def check_embedding_init(config: RunConfig, model: nn.Module) -> None:
    """An ``embedding_init`` for a model without an embedding table → one line: it would
    do nothing."""
    if config.embedding_init == "default":
        return
    from initlab.coverage import own_embeddings

    if not own_embeddings(model):
        raise InitlabError(
            f"embedding_init '{config.embedding_init}' would change nothing: "
            f"{shown_spec(config.model)} has no nn.Embedding table"
        )


def check_init_reaches(config: RunConfig, model: nn.Module) -> None:
    """A scheme for a model with no layer a scheme sets (its weights are bare
    ``nn.Parameter``s used in ``F.linear``, say) → one line: every init would train the
    model as built, and the comparison would rank identical runs."""
    from initlab.coverage import weight_layers
    from initlab.embedding_init import tied_tables

    layers = weight_layers(model)
    if config.init == "default" or any(not tied_tables(model, n) for n, _ in layers):
        return
    if layers:  # a bigram model: its one layer's weight is the embedding table
        table = tied_tables(model, layers[0][0])[0]
        raise InitlabError(
            f"init '{config.init}' would change nothing but a bias: the weight of "
            f"{layers[0][0]}, {shown_spec(config.model)}'s only layer, is {table}.weight "
            f"(tied), which {option('--embedding-init')} sets; compare that (a sweep's "
            "embedding_init axis), or compare 'default' only"
        )
    names = [name for name, _ in model.named_parameters()]
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    raise InitlabError(
        f"init '{config.init}' would change nothing: {shown_spec(config.model)} has no layer "
        "a scheme "
        f"sets (nn.Linear, nn.Conv*, an RNN, nn.MultiheadAttention) and uses its parameters "
        f"({shown or 'none'}) directly; build it from those modules, or compare 'default' only"
    )


def check_finite(data: object) -> None:
    """NaN/inf in any split's floating-point inputs → one line naming the split."""
    for split in ("train", "val", "test"):
        x = getattr(data, f"x_{split}", None)
        if isinstance(x, Tensor) and x.is_floating_point() and len(x):
            bad = int((~torch.isfinite(x)).sum())
            if bad:
                raise InitlabError(
                    f"the {split} inputs contain {bad} NaN/inf value(s); clean the data first"
                )


def probe_output(model: nn.Module, data: object) -> Tensor:
    """``model``'s output on the first two training examples (:func:`probe_forward`); one
    line unless it is a tensor."""
    out = probe_forward(model, data)
    if not isinstance(out, Tensor):
        raise InitlabError(not_a_tensor(out))
    return out


def not_a_tensor(out: object) -> str:
    """The line for a model whose output is not one tensor (a dict, a tuple)."""
    return (
        f"the model returned a {type(out).__name__}, not a tensor; return the logits (or "
        "predictions) as one tensor (for a Hugging Face-style model, a factory that wraps "
        "it: see docs/your-model.md, 'Models that return a dict or a tuple')"
    )


def probe_forward(model: nn.Module, data: object) -> object:
    """What ``model`` returns for the first two training examples (on the CPU, eval mode):
    the check that it can run on the data (:func:`run_watched`)."""
    x = data.x_train[:PROBE_EXAMPLES].cpu()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model.eval()
        return run_watched(model, x, data)


def run_watched(model: nn.Module, x: Tensor, data: object = None) -> object:
    """``model(x)``, with an ``nn.Embedding`` that takes the inputs themselves checked
    against every split's ids of ``data`` (``None``: against ``x``, the inputs) before it
    runs (:func:`check_token_ids`); a model that fails on them is one line
    (:class:`ModelFailed`, :func:`failure_line`: the module whose forward raised)."""
    modules = [  # a ScriptModule takes no hooks: it runs unwatched
        (name, module)
        for name, module in model.named_modules()
        if not isinstance(module, torch.jit.ScriptModule)
    ]
    hooks = [
        module.register_forward_pre_hook(
            lambda mod, args, name=name: check_token_ids(name, mod, args, x, data)
        )
        for name, module in modules
        if isinstance(module, nn.Embedding)
    ]
    active: list[str] = []  # the modules whose forward is running: the last one failed
    for name, module in modules:
        hooks.append(module.register_forward_pre_hook(lambda *_, n=name: active.append(n)))
        hooks.append(module.register_forward_hook(lambda *_: _drop_last(active)))
    try:
        return model(x)
    except InitlabError:
        raise
    except Exception as exc:
        failed = active[-1] if active else ""
        raise ModelFailed(failure_line(model, failed, x, exc)) from None
    finally:
        for hook in hooks:
            hook.remove()


def _drop_last(active: list[str]) -> None:
    """A forward hook's body: the module finished (``None``: its output stays as it is)."""
    active.pop()


DTYPE_ERROR = re.compile(r"dtype|scalar type|datatype|input type|not implemented for '", re.I)
"""The words of torch's errors for a tensor of the wrong dtype (``mat1 and mat2 must have the
same dtype``, ``Input type (long int) and bias type (float) should be the same``, ``"addmm"
not implemented for 'Long'``)."""


def failure_line(model: nn.Module, failed: str, x: Tensor, exc: Exception) -> str:
    """What failed when ``model`` ran on the inputs ``x``: their shape (and dtype, when
    integer), the module whose forward raised (``failed``; ``""``: the model's own forward)
    and the first line of its error. Floats are suggested only where they are the fix:
    integer inputs, a dtype error, raised in a module with floating-point parameters of its
    own that is not an embedding (a Linear, a Conv, an RNN taking the ids as features)."""
    first = first_line(exc)
    module = model.get_submodule(failed)
    where = f"{failed} ({type(module).__name__})" if failed else f"{type(model).__name__}.forward"
    own = [p for p in module.parameters(recurse=False) if p.is_floating_point()]
    floats = (
        not x.is_floating_point()
        and DTYPE_ERROR.search(first) is not None
        and bool(own)
        and not isinstance(module, nn.Embedding | nn.EmbeddingBag)
    )
    advice = (
        f"; a {type(module).__name__} takes floats: if these are features, give them as "
        "floats, e.g. x.astype('float32')"
        if floats
        else layout_hint(model, failed, x)
    )
    return (
        f"the model cannot run on the data: data examples have shape {list(x.shape[1:])}"
        f"{_integer_note(x)} but the model failed in {where} on a batch {list(x.shape)}: "
        f"{first}{advice}"
    )


def check_token_ids(name: str, embedding: nn.Embedding, args: tuple, x: Tensor, data) -> None:
    """If ``embedding`` is called on the inputs ``x`` themselves, every split's inputs must
    be ids in ``[0, num_embeddings)`` (``data=None``: ``x`` itself): else one line naming
    the largest id and the table's size (a later batch would fail mid-training with
    ``index out of range in self``); float inputs (uint8 and bool ones are read as
    features) are refused as ids."""
    if not args or args[0] is not x:
        return
    if x.is_floating_point():
        raise InitlabError(
            f"the model's first layer {name} (Embedding) takes the inputs as token ids, but "
            f"they are {str(x.dtype).removeprefix('torch.')}: initlab reads float, uint8 and "
            "bool inputs as features; give token ids as int64 (e.g. x.astype('int64'))"
        )
    rows = embedding.num_embeddings
    splits = {"inputs": x} if data is None else {
        "the validation split (held out of x_train)" if split == "val" else f"x_{split}":
        getattr(data, f"x_{split}", None) for split in ("train", "val", "test")
    }  # fmt: skip
    for where, ids in splits.items():
        if not isinstance(ids, Tensor) or not ids.numel() or ids.is_floating_point():
            continue
        low, high = int(ids.min()), int(ids.max())
        if low < 0:
            raise InitlabError(f"{where} has a negative token id ({low}); ids are 0, 1, 2, ...")
        if high >= rows:
            raise InitlabError(
                f"{where} has token id {high} but the model's first layer {name} (Embedding) "
                f"has {rows} rows, ids 0..{rows - 1}; build it with a vocabulary of at least "
                f"{high + 1} ({option('a --model-arg', 'a model_args entry')}) or map the ids "
                "into that range"
            )


def _integer_note(x: Tensor) -> str:
    """For integer inputs: what they were taken for."""
    if x.is_floating_point():
        return ""
    top = int(x.max()) if x.numel() else 0
    return (
        f" and integer dtype {str(x.dtype).removeprefix('torch.')} (kept as token ids, max "
        f"{top} in the probe)"
    )
