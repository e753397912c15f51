"""A tiny SANA: every part of the real architecture, a few thousand parameters, built offline.

The folder it writes is an ordinary `SanaPipeline` folder (model_index.json + one sub-folder per
part), so tests load it through the same code as a downloaded checkpoint:
- transformer: `SanaTransformer2DModel` (linear self-attention, cross-attention, GLUMBConv),
- text_encoder: a transformers `Gemma2Model` (decoder only, as SANA uses `get_decoder()`),
- tokenizer: a `GemmaTokenizer` (BPE with byte fallback, BOS added) built from a small vocabulary
  with the `tokenizers` library, so no download is needed,
- vae: an `AutoencoderDC` with six stages, so it compresses 32x like DC-AE f32c32,
- scheduler: `FlowMatchEulerDiscreteScheduler` with SANA's flow shift (the released checkpoints
  ship Flow-DPM-Solver; the tiny one ships Euler so the Euler sampler can be checked against it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

#: Gemma's special tokens, in Gemma's id order (pad 0, eos 1, bos 2, unk 3)
GEMMA_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
#: the word-start marker of SentencePiece-style vocabularies
WORD_START = "\u2581"
#: characters that get a token of their own; anything else falls back to its UTF-8 bytes
TOKEN_CHARACTERS = WORD_START + "abcdefghijklmnopqrstuvwxyz0123456789.,:;'\"-!?()>"
#: a few merges so that the tokenizer is a real BPE and not a character map
TOKEN_MERGES = ((WORD_START, "a"), (WORD_START, "t"), ("t", "h"), (WORD_START, "th"), ("e", "r"))

TINY_GEMMA_HIDDEN = 32
TINY_LATENT_CHANNELS = 32  # as DC-AE f32c32, so latent shapes match the real family
TINY_DC_AE_STAGES = 6  # 2**(6 - 1) = 32x spatial compression, as the real DC-AE
DC_AE_SCALING_FACTOR = 0.41407  # mit-han-lab/dc-ae-f32c32-sana-1.0 (the tiny VAE keeps the real value)
SANA_FLOW_SHIFT = 3.0


def build_gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma-style BPE tokenizer with byte fallback over a ~320-token vocabulary."""
    vocab: dict[str, int] = {token: i for i, token in enumerate(GEMMA_SPECIAL_TOKENS)}
    for byte in range(256):  # byte fallback: every character is encodable
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in TOKEN_CHARACTERS:
        vocab.setdefault(char, len(vocab))
    for left, right in TOKEN_MERGES:
        vocab.setdefault(left + right, len(vocab))
    # Gemma's tokenizer prepends <bos>; SanaPipeline relies on it (it keeps token 0 of each prompt)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=list(TOKEN_MERGES), add_bos_token=True)
    tokenizer.padding_side = "right"
    return tokenizer


def build_gemma2(vocab_size: int) -> Gemma2Model:
    config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=TINY_GEMMA_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=2048,  # SANA's instruction + 300 prompt tokens is ~1000 bytes here
        sliding_window=64,  # shorter than the sequence, so Gemma-2's local layers are exercised
    )
    return Gemma2Model(config).eval()


def build_transformer() -> SanaTransformer2DModel:
    return SanaTransformer2DModel(
        in_channels=TINY_LATENT_CHANNELS,
        out_channels=TINY_LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=TINY_GEMMA_HIDDEN,
        mlp_ratio=2.5,
        sample_size=16,  # a size SanaPipeline's resolution binning knows (512 px bins)
        patch_size=1,
    ).eval()


def build_vae() -> AutoencoderDC:
    stages = TINY_DC_AE_STAGES
    return AutoencoderDC(
        in_channels=3,
        latent_channels=TINY_LATENT_CHANNELS,
        attention_head_dim=4,
        encoder_block_types=("ResBlock",) * (stages - 1) + ("EfficientViTBlock",),
        decoder_block_types=("ResBlock",) * (stages - 1) + ("EfficientViTBlock",),
        # the deepest stage is as wide as the latent: DC-AE's shortcuts between the latent and
        # that stage group or repeat channels, so it needs a multiple of latent_channels
        encoder_block_out_channels=(8,) * (stages - 1) + (TINY_LATENT_CHANNELS,),
        decoder_block_out_channels=(8,) * (stages - 1) + (TINY_LATENT_CHANNELS,),
        encoder_layers_per_block=(1,) * stages,
        decoder_layers_per_block=(1,) * stages,
        encoder_qkv_multiscales=((),) * (stages - 1) + ((5,),),
        decoder_qkv_multiscales=((),) * (stages - 1) + ((5,),),
        scaling_factor=DC_AE_SCALING_FACTOR,
    ).eval()


def build_tiny_sana_pipeline(seed: int = 0) -> SanaPipeline:
    """All parts with seeded random weights, fp32."""
    torch.manual_seed(seed)
    tokenizer = build_gemma_tokenizer()
    return SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=build_gemma2(len(tokenizer)),
        vae=build_vae(),
        transformer=build_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=SANA_FLOW_SHIFT),
    )


def write_tiny_sana(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny SanaPipeline folder (safetensors) and return its path."""
    folder = Path(folder)
    build_tiny_sana_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    return folder
