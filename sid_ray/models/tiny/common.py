"""Tiny CLIP / T5 text encoders and their tokenizers, built without any download.

Reusable by every family's tiny pipeline (FLUX: CLIP-L + T5; SD3: CLIP-L + CLIP-G + T5; SANA
uses a Gemma encoder and builds its own). The tokenizers are the real transformers classes
(`CLIPTokenizer`, `T5TokenizerFast`; transformers 5 builds both on the `tokenizers` library)
given a small vocabulary instead of the released one:
- CLIP: byte-level BPE with no merges, so every byte is one token (256 bytes x {"", "</w>"}
  plus <|startoftext|>, <|endoftext|> = 514 tokens); any prompt tokenizes, nothing is unknown.
- T5: a unigram vocabulary of printable ASCII characters plus "▁" (word start), so prompts
  tokenize character by character; non-ASCII characters map to <unk>.
Both save and load with `save_pretrained` / `from_pretrained` like the real ones, so a pipeline
folder built from them loads with stock diffusers.

Usage (sizes are keyword arguments with tiny defaults):
    tok = clip_tokenizer();  enc = tiny_clip_text_model(vocab_size=len(tok), with_projection=True)
    tok5 = t5_tokenizer(model_max_length=16);  enc5 = tiny_t5_encoder(vocab_size=len(tok5))
"""

from __future__ import annotations

import string

import torch
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"


def clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer (no merges): bytes -> tokens, ids 0..511, then BOS 512, EOS 513.

    Keep `model_max_length` at CLIP's 77 unless the pipeline under test says otherwise: pipelines
    read it from the tokenizer (FluxPipeline pads CLIP input to it).
    """
    byte_chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(byte_chars)}
    vocab.update({c + "</w>": len(byte_chars) + i for i, c in enumerate(byte_chars)})
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def t5_tokenizer(model_max_length: int = 32) -> T5TokenizerFast:
    """A character-level unigram T5 tokenizer: <pad>=0, </s>=1, <unk>=2, "▁", printable ASCII."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.printable if not c.isspace()]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def tiny_clip_text_model(
    vocab_size: int = 514,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 64,
    projection_dim: int = 32,
    max_position_embeddings: int = 77,
    with_projection: bool = False,
    seed: int = 0,
) -> CLIPTextModel | CLIPTextModelWithProjection:
    """A CLIP text encoder (FLUX: `CLIPTextModel`, pooled output; SD3: `...WithProjection`).

    bos/eos ids match `clip_tokenizer()` (512/513): CLIP pools the hidden state at the EOS token.
    """
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        projection_dim=projection_dim,
        max_position_embeddings=max_position_embeddings,
        hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def tiny_t5_encoder(
    vocab_size: int = 104,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    d_kv: int = 16,
    d_ff: int = 64,
    seed: int = 0,
) -> T5EncoderModel:
    """A T5 v1.1 encoder (gated GELU, as FLUX and SD3 use) sized for CPU tests."""
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_kv=d_kv,
        d_ff=d_ff,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()


def tiny_kl_vae(latent_channels: int, scaling_factor: float, shift_factor: float | None, stages: int = 4):
    """An `AutoencoderKL` of `stages` levels (8x for 4, as the released SD3 / FLUX VAEs) with
    `latent_channels` channels and the family's latent normalisation, 8 channels wide."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * stages,
        up_block_types=("UpDecoderBlock2D",) * stages,
        block_out_channels=(8,) * stages,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).eval()
