"""Workloads by name: a model, a batch and a loss, built from configs with random weights.

A workload is what one training iteration needs besides the optimizer. The zoo covers
the reference models (torchvision ResNets, BERT and GPT-2 from transformers) and tiny
versions for tests; a user brings their own as ``path/to/file.py:make`` or
``package.module:make``, where ``make(batch_size)`` returns ``(model, batch, loss_fn)``
and ``loss_fn(model, batch)`` returns the scalar loss.

Everything is built from the global RNG, so the same seed gives the same weights and the
same batch; that is how ``acir-run`` rebuilds the model that an artifact was captured
from. Building inside a ``FakeTensorMode`` gives a workload that costs no memory.

A factory is user code, and some of it cannot run on fake tensors: weight initialisers
that call ``.item()`` (torchvision's ConvNeXt, RegNet, Swin and ViT do), a checkpoint read
from a file, NumPy. Capture must take any factory that works eagerly, so when the fake
build fails (:func:`worth_building_for_real`), the workload is built for real and its
parameters, buffers and batch are turned into fake tensors (:func:`to_fake`): that costs
the model's parameter and buffer bytes for a moment, and capture says so.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from acir.errors import CaptureError


@dataclass
class Workload:
    model: Any  # torch.nn.Module
    batch: Any  # a pytree of tensors
    loss_fn: Callable[[Any, Any], Any]
    real_bytes: int | None = None  # built for real, then made fake: the parameter and buffer bytes it held
    real_build_reason: str = ""    # why it could not be built under fake tensors


@dataclass(frozen=True)
class ZooEntry:
    summary: str
    build: Callable[[int, int, int], Workload]  # (batch_size, seq_len, image_size)
    default_seq_len: int = 0
    default_image_size: int = 0


def _cross_entropy(model, batch):
    import torch.nn.functional as F

    x, y = batch
    return F.cross_entropy(model(x), y)


def _hf_loss(model, batch):
    return model(**batch).loss


def _mlp(b: int, _s: int, _i: int) -> Workload:
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    batch = (torch.randn(b, 64), torch.randint(0, 10, (b,)))
    return Workload(model, batch, _cross_entropy)


def _resnet(name: str) -> Callable[[int, int, int], Workload]:
    def build(b: int, _s: int, image_size: int) -> Workload:
        import torch
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=1000)
        batch = (torch.randn(b, 3, image_size, image_size), torch.randint(0, 1000, (b,)))
        return Workload(model, batch, _cross_entropy)

    return build


def _bert(tiny: bool) -> Callable[[int, int, int], Workload]:
    def build(b: int, seq_len: int, _i: int) -> Workload:
        import torch
        from transformers import BertConfig, BertForMaskedLM
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()

        kw = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512) if tiny else {}
        config = BertConfig(max_position_embeddings=max(512, seq_len), **kw)
        model = BertForMaskedLM(config)
        ids = torch.randint(0, config.vocab_size, (b, seq_len))
        batch = {"input_ids": ids, "attention_mask": torch.ones(b, seq_len, dtype=torch.int64),
                 "labels": torch.randint(0, config.vocab_size, (b, seq_len))}
        return Workload(model, batch, _hf_loss)

    return build


GPT2_SIZES = {"tiny": dict(n_embd=128, n_layer=2, n_head=2), "small": {},
              "medium": dict(n_embd=1024, n_layer=24, n_head=16)}


def _gpt2(size: str) -> Callable[[int, int, int], Workload]:
    def build(b: int, seq_len: int, _i: int) -> Workload:
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()

        config = GPT2Config(n_positions=max(1024, seq_len), **GPT2_SIZES[size])
        model = GPT2LMHeadModel(config)
        ids = torch.randint(0, config.vocab_size, (b, seq_len))
        batch = {"input_ids": ids, "labels": ids.clone()}
        return Workload(model, batch, _hf_loss)

    return build


ZOO: dict[str, ZooEntry] = {
    "mlp": ZooEntry("3-layer MLP on 64 features, 10 classes", _mlp),
    "resnet18": ZooEntry("torchvision ResNet-18, 1000 classes", _resnet("resnet18"), default_image_size=224),
    "resnet50": ZooEntry("torchvision ResNet-50, 1000 classes", _resnet("resnet50"), default_image_size=224),
    "resnet152": ZooEntry("torchvision ResNet-152, 1000 classes", _resnet("resnet152"), default_image_size=224),
    "bert-tiny": ZooEntry("BertForMaskedLM, 2 layers, hidden 128", _bert(True), default_seq_len=128),
    "bert-base": ZooEntry("BertForMaskedLM, bert-base-uncased config", _bert(False), default_seq_len=128),
    "gpt2-tiny": ZooEntry("GPT2LMHeadModel, 2 layers, hidden 128", _gpt2("tiny"), default_seq_len=128),
    "gpt2": ZooEntry("GPT2LMHeadModel, gpt2 (124M) config", _gpt2("small"), default_seq_len=128),
    "gpt2-medium": ZooEntry("GPT2LMHeadModel, gpt2-medium (355M) config: 24 layers, hidden 1024",
                            _gpt2("medium"), default_seq_len=128),
}


def is_user_spec(spec: str) -> bool:
    return ":" in spec


def _load_factory(spec: str) -> Callable:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise CaptureError(f"bad model spec {spec!r}; use a zoo name, path/to/file.py:make or package.module:make")
    if target.endswith(".py") or os.sep in target:
        if not os.path.isfile(target):
            raise CaptureError(f"model file {target} does not exist (from model spec {spec!r})")
        name = "_acir_user_" + os.path.splitext(os.path.basename(target))[0]
        mod_spec = importlib.util.spec_from_file_location(name, target)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except Exception as e:
            raise CaptureError(f"importing {target} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise CaptureError(f"cannot import module {target!r} (from model spec {spec!r}): {e}") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CaptureError(f"{target} has no callable {attr!r}; the factory must be "
                           "make(batch_size) -> (model, batch, loss_fn)")
    return factory


def _user_workload(spec: str, batch_size: int) -> Workload:
    import torch

    factory = _load_factory(spec)
    try:
        out = factory(batch_size)
    except CaptureError:
        raise
    except Exception as e:
        raise CaptureError(f"model factory {spec} raised {type(e).__name__}: {e}") from e
    if not (isinstance(out, tuple) and len(out) == 3):
        raise CaptureError(f"model factory {spec} returned {type(out).__name__}; it must return a tuple "
                           "(model, batch, loss_fn)")
    model, batch, loss_fn = out
    if not isinstance(model, torch.nn.Module):
        raise CaptureError(f"model factory {spec} returned a {type(model).__name__} as the model; "
                           "it must be a torch.nn.Module")
    if not callable(loss_fn):
        raise CaptureError(f"model factory {spec} returned a non-callable loss_fn; "
                           "it must be loss_fn(model, batch) -> scalar loss")
    return Workload(model, batch, loss_fn)


def build(spec: str, batch_size: int, seq_len: int = 0, image_size: int = 0) -> Workload:
    """Build the workload named by ``spec`` in train mode, from the current RNG state."""
    if batch_size < 1:
        raise CaptureError(f"batch size must be at least 1, not {batch_size}")
    if is_user_spec(spec):
        wl = _user_workload(spec, batch_size)
    else:
        entry = ZOO.get(spec)
        if entry is None:
            import difflib

            close = difflib.get_close_matches(spec, ZOO, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CaptureError(f"unknown model {spec!r}{hint}; known models: {', '.join(ZOO)}, "
                               "or your own as path/to/file.py:make")
        wl = entry.build(batch_size, seq_len or entry.default_seq_len, image_size or entry.default_image_size)
    wl.model.train()
    return wl


def effective_sizes(spec: str, seq_len: int, image_size: int) -> tuple[int, int]:
    """The (seq_len, image_size) a zoo model is built with (the defaults filled in)."""
    entry = ZOO.get(spec)
    if entry is None:
        return seq_len, image_size
    return seq_len or entry.default_seq_len, image_size or entry.default_image_size


def worth_building_for_real(e: BaseException) -> bool:
    """Could building for real succeed where building under fake tensors raised ``e``?

    Yes for anything the factory (or a zoo model's construction) raised, the fake-tensor
    errors among them (``DataDependentOutputException`` from ``.item()``, a NumPy call, a
    file read); no for acir's own refusals of the spec or of what the factory returned,
    which a real build would repeat."""
    if not isinstance(e, CaptureError):
        return True
    return e.__cause__ is not None and not isinstance(e.__cause__, CaptureError)


def storage_bytes(tensors) -> int:
    """The bytes of the distinct storages under ``tensors`` (tied or viewed tensors once)."""
    seen: set = set()
    total = 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def to_fake(wl: Workload, mode) -> int:
    """Turn the real parameters, buffers and batch tensors of ``wl`` into fake tensors of
    ``mode`` in place (tied parameters stay one parameter, views stay views of one storage),
    so that tracing and the optimizer's state cost no memory; returns the parameter and
    buffer bytes the real build held. Other tensors the model holds stay real: the step
    reads them as constants, as it would have eagerly."""
    import torch
    from torch.utils._pytree import tree_map

    model = wl.model
    real = [t for t in (*model.parameters(), *model.buffers())]
    nbytes = storage_bytes(real)
    made: dict[int, Any] = {}

    def fake(t, param: bool):
        if id(t) not in made:
            f = mode.from_tensor(t.detach())
            made[id(t)] = torch.nn.Parameter(f, requires_grad=t.requires_grad) if param else f
        return made[id(t)]

    for m in model.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = fake(p, True)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = fake(b, False)
    wl.batch = tree_map(lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t, wl.batch)
    return nbytes
