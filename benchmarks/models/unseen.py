"""Architectures outside acir's zoo and test suite, small enough for a 2-core CPU, random weights.

Each factory is ``NAME(batch_size) -> (model, batch, loss_fn)``, as ``acir-bench`` and
``acir-capture`` accept it: ``acir-bench benchmarks/models/unseen.py:vit_small -b 4``.
``benchmarks/unseen_models.sh`` runs them all. Nothing is downloaded: every model is built
from a config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE = 64     # image side for the torchvision models
SEQ = 64       # sequence length for the text models
VOCAB = 1000
CLASSES = 10


def _quiet_hf():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _ce(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _hf(model, batch):
    return model(**batch).loss


def _images(batch_size: int):
    return (torch.randn(batch_size, 3, IMAGE, IMAGE), torch.randint(0, CLASSES, (batch_size,)))


def _padded_mask(batch_size: int, seq: int = SEQ) -> torch.Tensor:
    """1 for tokens, 0 for padding: every other sequence has its last quarter padded."""
    mask = torch.ones(batch_size, seq, dtype=torch.long)
    mask[1::2, seq - seq // 4:] = 0
    return mask


# ---- torchvision ---------------------------------------------------------------------------

def vit_small(batch_size: int):
    """torchvision VisionTransformer: image 64, patch 8, 6 layers, hidden 192, 3 heads, MLP 768."""
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=IMAGE, patch_size=8, num_layers=6, num_heads=3, hidden_dim=192,
                              mlp_dim=768, num_classes=CLASSES)
    return model, _images(batch_size), _ce


def convnext_tiny(batch_size: int):
    from torchvision.models import convnext_tiny as build

    return build(num_classes=CLASSES), _images(batch_size), _ce


def mobilenet_v3_small(batch_size: int):
    from torchvision.models import mobilenet_v3_small as build

    return build(num_classes=CLASSES), _images(batch_size), _ce


def efficientnet_b0(batch_size: int):
    from torchvision.models import efficientnet_b0 as build

    return build(num_classes=CLASSES), _images(batch_size), _ce


def swin_t(batch_size: int):
    from torchvision.models import swin_t as build

    return build(num_classes=CLASSES), _images(batch_size), _ce


# ---- transformers --------------------------------------------------------------------------

def t5_small(batch_size: int):
    """T5ForConditionalGeneration, d_model 128, 4+4 layers, 4 heads, vocab 1000; labels padded with -100."""
    _quiet_hf()
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=VOCAB, d_model=128, d_kv=32, d_ff=512, num_layers=4, num_decoder_layers=4,
                   num_heads=4, dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(cfg)
    ids = torch.randint(2, VOCAB, (batch_size, SEQ))
    labels = torch.randint(2, VOCAB, (batch_size, SEQ // 2))
    labels[:, -4:] = -100                      # ignored positions
    batch = {"input_ids": ids, "attention_mask": _padded_mask(batch_size), "labels": labels}
    return model, batch, _hf


def roberta_cls(batch_size: int):
    """RobertaForSequenceClassification, hidden 128, 4 layers, 4 heads; padded attention mask."""
    _quiet_hf()
    from transformers import RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=SEQ + 2, num_labels=3)
    model = RobertaForSequenceClassification(cfg)
    ids = torch.randint(3, VOCAB, (batch_size, SEQ))
    mask = _padded_mask(batch_size)
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (batch_size,))}
    return model, batch, _hf


def distilbert_cls(batch_size: int):
    """DistilBertForSequenceClassification, dim 128, 4 layers, 4 heads; padded attention mask."""
    _quiet_hf()
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(vocab_size=VOCAB, dim=128, n_layers=4, n_heads=4, hidden_dim=512,
                           max_position_embeddings=SEQ, num_labels=3)
    model = DistilBertForSequenceClassification(cfg)
    batch = {"input_ids": torch.randint(1, VOCAB, (batch_size, SEQ)), "attention_mask": _padded_mask(batch_size),
             "labels": torch.randint(0, 3, (batch_size,))}
    return model, batch, _hf


def llama_tiny(batch_size: int):
    """LlamaForCausalLM, hidden 128, 4 layers, 4 heads (2 KV heads, GQA), vocab 1000, tied embeddings."""
    _quiet_hf()
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2 * SEQ,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, VOCAB, (batch_size, SEQ))
    return model, {"input_ids": ids, "labels": ids.clone()}, _hf


def gptneo_tiny(batch_size: int):
    """GPTNeoForCausalLM, hidden 128, 4 layers alternating global/local (window 16) attention, vocab 1000."""
    _quiet_hf()
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    cfg = GPTNeoConfig(vocab_size=VOCAB, hidden_size=128, num_layers=4, num_heads=4,
                       attention_types=[[["global", "local"], 2]], window_size=16,
                       max_position_embeddings=2 * SEQ, intermediate_size=512)
    model = GPTNeoForCausalLM(cfg)
    ids = torch.randint(0, VOCAB, (batch_size, SEQ))
    return model, {"input_ids": ids, "labels": ids.clone()}, _hf


# ---- plain PyTorch -------------------------------------------------------------------------

class RNNClassifier(nn.Module):
    """Embedding, a 2-layer LSTM (or GRU) with dropout between layers, a linear head on the mean over time."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 64)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(64, 128, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Linear(128, CLASSES)

    def forward(self, ids):
        out, _ = self.rnn(self.emb(ids))
        return self.head(out.mean(dim=1))


def lstm_clf(batch_size: int):
    return RNNClassifier("lstm"), (torch.randint(0, VOCAB, (batch_size, SEQ)),
                                   torch.randint(0, CLASSES, (batch_size,))), _ce


def gru_clf(batch_size: int):
    return RNNClassifier("gru"), (torch.randint(0, VOCAB, (batch_size, SEQ)),
                                  torch.randint(0, CLASSES, (batch_size,))), _ce


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class TiedLM(nn.Module):
    """A token-level LM whose output projection is the embedding's weight (tied), and one block
    (``shared``) called twice, before and after a ModuleList of 4 distinct blocks."""

    def __init__(self, d: int = 128) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        self.shared = Block(d)
        self.blocks = nn.ModuleList([Block(d) for _ in range(4)])
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, VOCAB, bias=False)
        self.out.weight = self.emb.weight          # weight tying

    def forward(self, ids):
        h = self.shared(self.emb(ids))
        for b in self.blocks:
            h = b(h)
        h = self.shared(h)                          # the same module, a second time
        return self.out(self.norm(h))


def tied_lm(batch_size: int):
    ids = torch.randint(0, VOCAB, (batch_size, SEQ))

    def loss_fn(model, batch):
        logits = model(batch[0])
        return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), batch[0][:, 1:].reshape(-1))

    return TiedLM(), (ids,), loss_fn


class TorchTransformer(nn.Module):
    """torch.nn.TransformerEncoder (pre-norm, batch_first) with a key padding mask, mean-pooled, linear head."""

    def __init__(self, d: int = 128) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
        self.head = nn.Linear(d, CLASSES)

    def forward(self, ids, pad):
        h = self.enc(self.emb(ids), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return self.head((h * keep).sum(1) / keep.sum(1))


def torch_transformer(batch_size: int):
    ids = torch.randint(0, VOCAB, (batch_size, SEQ))
    pad = _padded_mask(batch_size) == 0

    def loss_fn(model, batch):
        ids, pad, y = batch
        return F.cross_entropy(model(ids, pad), y)

    return TorchTransformer(), (ids, pad, torch.randint(0, CLASSES, (batch_size,))), loss_fn


# ---- the same, with the KV cache off -------------------------------------------------------
# acir-bench's `checkpoint` peer wraps each block's forward in torch.utils.checkpoint; with the
# cache on (the configs' default, also in training) the replayed block appends to the cache the
# forward already filled, and the recomputation fails (T5: a different number of saved tensors;
# GPT-Neo: a size mismatch). HF's own gradient_checkpointing_enable() turns the cache off for this.

def t5_small_nocache(batch_size: int):
    model, batch, loss_fn = t5_small(batch_size)
    model.config.use_cache = False
    model.encoder.config.use_cache = False
    model.decoder.config.use_cache = False
    return model, batch, loss_fn


def gptneo_tiny_nocache(batch_size: int):
    model, batch, loss_fn = gptneo_tiny(batch_size)
    model.config.use_cache = False
    return model, batch, loss_fn


# ---- further patterns seen in the wild ------------------------------------------------------

def llama_gc(batch_size: int):
    """llama_tiny with HF's own gradient checkpointing on (the model already calls torch.utils.checkpoint)."""
    model, batch, loss_fn = llama_tiny(batch_size)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, batch, loss_fn


def mixtral_tiny(batch_size: int):
    """MixtralForCausalLM, hidden 128, 2 layers, 4 experts (top 2): data-dependent expert routing."""
    _quiet_hf()
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                        max_position_embeddings=2 * SEQ)
    model = MixtralForCausalLM(cfg)
    ids = torch.randint(0, VOCAB, (batch_size, SEQ))
    return model, {"input_ids": ids, "labels": ids.clone()}, _hf


class WeightNormCNN(nn.Module):
    """1-d convolutions under torch.nn.utils.parametrizations.weight_norm (weights computed in the forward)."""

    def __init__(self) -> None:
        super().__init__()
        from torch.nn.utils.parametrizations import weight_norm

        self.convs = nn.ModuleList([weight_norm(nn.Conv1d(32 if i else 8, 32, 5, padding=2)) for i in range(4)])
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x):
        for c in self.convs:
            x = F.leaky_relu(c(x), 0.1)
        return self.head(x.mean(-1))


def weightnorm_cnn(batch_size: int):
    return WeightNormCNN(), (torch.randn(batch_size, 8, 256), torch.randint(0, CLASSES, (batch_size,))), _ce


class SpectralConv(nn.Module):
    """A Fourier layer (FNO): rfft2, a complex weight on the low modes, irfft2."""

    def __init__(self, ch: int, modes: int) -> None:
        super().__init__()
        self.modes = modes
        self.w = nn.Parameter(torch.randn(ch, ch, modes, modes, dtype=torch.cfloat) / ch)
        self.lin = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        xf = torch.fft.rfft2(x)
        out = torch.zeros_like(xf)
        m = self.modes
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m, :m], self.w)
        return F.gelu(torch.fft.irfft2(out, s=x.shape[-2:]) + self.lin(x))


class FNO(nn.Module):
    def __init__(self, ch: int = 16) -> None:
        super().__init__()
        self.lift = nn.Conv2d(3, ch, 1)
        self.layers = nn.Sequential(*[SpectralConv(ch, 8) for _ in range(3)])
        self.proj = nn.Conv2d(ch, 1, 1)

    def forward(self, x):
        return self.proj(self.layers(self.lift(x)))


def fno(batch_size: int):
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randn(batch_size, 1, 32, 32)

    def loss_fn(model, batch):
        return (model(batch[0]) - batch[1]).pow(2).mean()

    return FNO(), (x, y), loss_fn


def autocast_mlp(batch_size: int):
    """An MLP stack whose loss runs under torch.autocast('cpu', bfloat16)."""
    model = nn.Sequential(*[nn.Sequential(nn.Linear(256, 256), nn.GELU(), nn.LayerNorm(256)) for _ in range(4)],
                          nn.Linear(256, CLASSES))

    def loss_fn(m, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = m(batch[0])
        return F.cross_entropy(logits.float(), batch[1])

    return model, (torch.randn(batch_size * 16, 256), torch.randint(0, CLASSES, (batch_size * 16,))), loss_fn


class UNetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout)
        self.c2, self.n2 = nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout)

    def forward(self, x):
        return F.silu(self.n2(self.c2(F.silu(self.n1(self.c1(x))))))


class UNet(nn.Module):
    """A small UNet: GroupNorm, SiLU, max-pool down, nearest interpolate up, skip concatenations."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.d1, self.d2, self.mid = UNetBlock(3, c), UNetBlock(c, 2 * c), UNetBlock(2 * c, 4 * c)
        self.u2, self.u1 = UNetBlock(6 * c, 2 * c), UNetBlock(3 * c, c)
        self.out = nn.Conv2d(c, 3, 1)

    def forward(self, x):
        a = self.d1(x)
        b = self.d2(F.max_pool2d(a, 2))
        m = self.mid(F.max_pool2d(b, 2))
        b = self.u2(torch.cat([F.interpolate(m, scale_factor=2.0, mode="nearest"), b], 1))
        a = self.u1(torch.cat([F.interpolate(b, scale_factor=2.0, mode="bilinear", align_corners=False), a], 1))
        return self.out(a)


def unet_small(batch_size: int):
    x = torch.randn(batch_size, 3, IMAGE, IMAGE)

    def loss_fn(model, batch):
        return F.mse_loss(model(batch[0]), batch[1], reduction="sum") / batch[0].numel()

    return UNet(), (x, torch.randn_like(x)), loss_fn


def mixtral_tiny_eager(batch_size: int):
    """mixtral_tiny with transformers' eager experts (a Python loop over the experts the routing hit)
    instead of torch._grouped_mm, whose meta kernel rejects float32 (fake-tensor tracing fails)."""
    _quiet_hf()
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                        max_position_embeddings=2 * SEQ, experts_implementation="eager")
    model = MixtralForCausalLM(cfg)
    ids = torch.randint(0, VOCAB, (batch_size, SEQ))
    return model, {"input_ids": ids, "labels": ids.clone()}, _hf


class SpectralConvReal(SpectralConv):
    """SpectralConv with its complex weight stored as a real parameter (..., 2), viewed as complex in the forward."""

    def __init__(self, ch: int, modes: int) -> None:
        nn.Module.__init__(self)
        self.modes = modes
        self.w = nn.Parameter(torch.randn(ch, ch, modes, modes, 2) / ch)
        self.lin = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        xf = torch.fft.rfft2(x)
        out = torch.zeros_like(xf)
        m = self.modes
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m, :m], torch.view_as_complex(self.w))
        return F.gelu(torch.fft.irfft2(out, s=x.shape[-2:]) + self.lin(x))


def fno_real(batch_size: int):
    model, batch, loss_fn = fno(batch_size)
    model.layers = nn.Sequential(*[SpectralConvReal(16, 8) for _ in range(3)])
    return model, batch, loss_fn


def llama_gc_nohook(batch_size: int):
    """llama_gc without the forward hook gradient_checkpointing_enable() puts on the input embeddings
    (acir refuses module hooks): the layers still call torch.utils.checkpoint inside the model."""
    model, batch, loss_fn = llama_gc(batch_size)
    model.disable_input_require_grads()
    return model, batch, loss_fn


class InnerCheckpoint(nn.Module):
    """Blocks (Block above) that the model itself runs under torch.utils.checkpoint (non-reentrant)."""

    def __init__(self, d: int = 128, dropout: bool = True) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(d) for _ in range(3)])
        if not dropout:
            for b in self.blocks:
                b.drop.p = 0.0
        self.head = nn.Linear(d, CLASSES)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        for b in self.blocks:
            x = checkpoint(b, x, use_reentrant=False)
        return self.head(x.mean(1))


def inner_checkpoint(batch_size: int):
    return InnerCheckpoint(dropout=False), (torch.randn(batch_size, SEQ, 128),
                                            torch.randint(0, CLASSES, (batch_size,))), _ce


def inner_checkpoint_dropout(batch_size: int):
    return InnerCheckpoint(dropout=True), (torch.randn(batch_size, SEQ, 128),
                                           torch.randint(0, CLASSES, (batch_size,))), _ce
