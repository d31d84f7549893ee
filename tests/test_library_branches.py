"""A library that branches on "am I being traced?" is not silently captured unlike eager.

transformers skips the causal mask in eager mode when nothing is padded (SDPA then runs
``is_causal``, grouped-query attention inside the kernel), but counts acir's fake tensors as
tracing and materialises the mask: the same values, and with grouped-query attention (here 2
key/value heads of 4) the shared heads' gradients summed in another order. With the model's KV
cache on (its default) it decides without asking, and the captured step is eager's bit for bit;
with ``use_cache=False`` (as gradient checkpointing sets it) it asks, and the capture warns.
Without grouped-query attention the traced branch is eager's bit for bit (BERT's tests), and
nothing is said.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import acir
from acir.frontend.trace import LIBRARY_BRANCH_WARNING


def tiny_llama(use_cache: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, use_cache=use_cache)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def loss_fn(model, batch):
    return model(input_ids=batch, labels=batch).loss


def test_with_its_cache_on_the_model_decides_as_eager_and_trains_bit_identically():
    model = tiny_llama(True)
    ref = copy.deepcopy(model)
    opt, ref_opt = torch.optim.SGD(model.parameters(), 0.5), torch.optim.SGD(ref.parameters(), 0.5)
    batches = [torch.randint(0, 64, (2, 16)) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no library-branch warning
        step = acir.compile(model, opt, loss_fn, batches[0], quiet=True)
    for b in batches:
        got = step(b)
        want = loss_fn(ref, b)
        want.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        assert torch.equal(got.detach(), want.detach())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


def test_without_its_cache_the_traced_branch_is_said():
    model = tiny_llama(False)
    opt = torch.optim.SGD(model.parameters(), 0.5)
    with pytest.warns(UserWarning, match="took its traced branch") as record:
        acir.compile(model, opt, loss_fn, torch.randint(0, 64, (2, 16)), quiet=True)
    assert any(str(w.message) == LIBRARY_BRANCH_WARNING for w in record)


def test_without_grouped_query_attention_nothing_is_said():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32, use_cache=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        acir.compile(model, torch.optim.SGD(model.parameters(), 0.5), loss_fn, torch.randint(0, 64, (2, 16)),
                     quiet=True)
