"""A 24-layer BERT (hidden 128, 2 heads, FFN 512, sequence 64): GPT-2 medium's depth at a small width,
to time the planners on a deep stack of identical layers (``acir-capture benchmarks/models/bert24.py:make -b 4``)."""

from __future__ import annotations

import torch


def make(batch_size: int, seq_len: int = 64):
    from transformers import BertConfig, BertForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = BertConfig(vocab_size=8192, hidden_size=128, num_hidden_layers=24, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=seq_len)
    model = BertForMaskedLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len))
    labels = torch.randint(0, cfg.vocab_size, (batch_size, seq_len))

    def loss_fn(m, batch):
        return m(input_ids=batch[0], labels=batch[1]).loss

    return model, (ids, labels), loss_fn
