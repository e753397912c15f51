"""SANA teachers: "sana-600m", "sana-1600m", "sana-tiny".

The family's facts, all here (shared/SID.md 1, 5):
- `SanaTransformer2DModel` takes the timestep as 1000 * t * `config.timestep_scale` (SanaPipeline
  multiplies the scheduler's sigma * 1000 by the config's `timestep_scale`, 1 in the released
  SANA configs) and predicts the velocity eps - x0. SANA-Sprint checkpoints take t itself
  (TrigFlow time, SanaSprintPipeline): `SanaVariant.timestep_multiplier` holds the 1000.
- Text: a Gemma-2 decoder. Prompts are lower-cased and stripped, prefixed with SANA's "complex
  human instruction" (the default of `SanaPipeline.__call__`, read from its signature), tokenised
  to instruction + 300 - 2 tokens, and the hidden states of token 0 (<bos>) and the last 299
  tokens are kept -> `prompt_embeds` (B, 300, 2304) with `prompt_attention_mask` (B, 300). We call
  `SanaPipeline.encode_prompt` for all of it.
- The unconditional condition is the pipeline's negative prompt "": encoded WITHOUT the
  instruction and without the token selection (300 tokens from the start), as `encode_prompt`
  does for negatives; two-pass CFG.
- VAE: DC-AE (`AutoencoderDC`), 32 latent channels, 32x compression; latents = z * scaling_factor
  (0.41407 for the released f32c32 DC-AE; read from its config), no shift.
- Latent shape (32, H / 32, W / 32), unpacked (patch size 1).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from diffusers import SanaPipeline, SanaTransformer2DModel

from sid_ray.models.dit import TransformerVelocity, Variant, VariantDiTAdapter, fp32_timestep
from sid_ray.sid.guidance import Conditioning

#: SanaPipeline's defaults, taken from its signature so they follow the installed diffusers
_PIPELINE_DEFAULTS = inspect.signature(SanaPipeline.__call__).parameters
COMPLEX_HUMAN_INSTRUCTION: tuple[str, ...] = tuple(_PIPELINE_DEFAULTS["complex_human_instruction"].default)
DEFAULT_MAX_SEQUENCE_LENGTH: int = _PIPELINE_DEFAULTS["max_sequence_length"].default  # 300

# The released transformers' architecture (diffusers SanaTransformer2DModel kwargs, 1024 px;
# scripts/convert_sana_to_diffusers.py), for random-weight benchmarks of the real size.
_SANA_COMMON: dict[str, Any] = {
    "in_channels": 32,
    "out_channels": 32,
    "caption_channels": 2304,  # Gemma-2-2B's hidden size
    "mlp_ratio": 2.5,
    "attention_bias": False,
    "sample_size": 32,  # 1024 px / 32
    "patch_size": 1,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "interpolation_scale": None,
}
SANA_600M_TRANSFORMER: dict[str, Any] = {
    **_SANA_COMMON,
    "num_attention_heads": 36,
    "attention_head_dim": 32,
    "num_cross_attention_heads": 16,
    "cross_attention_head_dim": 72,
    "cross_attention_dim": 1152,
    "num_layers": 28,
}
SANA_1600M_TRANSFORMER: dict[str, Any] = {
    **_SANA_COMMON,
    "num_attention_heads": 70,
    "attention_head_dim": 32,
    "num_cross_attention_heads": 20,
    "cross_attention_head_dim": 112,
    "cross_attention_dim": 2240,
    "num_layers": 20,
}


@dataclass(frozen=True)
class SanaVariant(Variant):
    """One registered SANA teacher."""

    #: timestep = multiplier * t * transformer.config.timestep_scale: 1000 for SANA (the pipeline
    #: feeds sigma * 1000), 1 for SANA-Sprint checkpoints (which take t)
    timestep_multiplier: float = 1000.0
    #: Gemma tokens kept per prompt, as the pipeline's `max_sequence_length`
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    #: prefix SANA puts before every prompt (empty = none), as the pipeline's default
    complex_human_instruction: tuple[str, ...] = COMPLEX_HUMAN_INSTRUCTION


VARIANTS: dict[str, SanaVariant] = {
    v.name: v
    for v in (
        SanaVariant("sana-600m", "Efficient-Large-Model/Sana_600M_1024px_diffusers", SANA_600M_TRANSFORMER),
        SanaVariant(
            "sana-1600m", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", SANA_1600M_TRANSFORMER
        ),
        # built by sid_ray.models.tiny.sana.write_tiny_sana; model.path must point at it
        SanaVariant("sana-tiny", ""),
    )
}

TEXT_PARTS = ("text_encoder", "tokenizer")


class SanaVelocity(TransformerVelocity):
    """v(x_t, t, cond) from one SanaTransformer2DModel forward; cond holds `prompt_embeds`
    (B, L, caption_channels) and `prompt_attention_mask` (B, L)."""

    def __init__(self, transformer: torch.nn.Module, timestep_multiplier: float = 1000.0):
        super().__init__(transformer)
        self.timestep_multiplier = timestep_multiplier

    def timestep(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """(B,) float32 timestep for flow time t (fp32 even for bf16 weights, as the pipeline)."""
        return fp32_timestep(t, batch, self.timestep_multiplier * self.transformer.config.timestep_scale)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        tensors = cond.tensors
        out = self.transformer(
            x_t.to(self.dtype),
            encoder_hidden_states=tensors["prompt_embeds"].to(self.dtype),
            encoder_attention_mask=tensors["prompt_attention_mask"],
            timestep=self.timestep(t, x_t.shape[0]).to(x_t.device),
            return_dict=False,
        )[0]
        if self.transformer.config.out_channels // 2 == x_t.shape[1]:
            out = out.chunk(2, dim=1)[0]  # learned-sigma checkpoints: the first half is the velocity
        return out.to(x_t.dtype)


class SanaAdapter(VariantDiTAdapter):
    """SANA teacher; see the module docstring for the family's facts."""

    family: ClassVar[str] = "sana"
    variants: ClassVar[dict[str, SanaVariant]] = VARIANTS
    text_parts: ClassVar[tuple[str, ...]] = TEXT_PARTS
    pipeline_class: ClassVar[type] = SanaPipeline
    transformer_class: ClassVar[type] = SanaTransformer2DModel
    # DC-AE: 32 pixels per latent pixel; the text enters by cross-attention (no joint tokens)
    vae_factor: ClassVar[int] = 32
    # Gemma-2-2B, the DC-AE f32c32 autoencoder
    released_part_parameters: ClassVar[dict[str, int]] = {"text_encoder": 2_614_000_000, "vae": 312_000_000}
    # the generator runs without CFG (SID.md 5; the pipeline's default guidance_scale is 4.5), and
    # at model.resolution exactly (binning would resize to the nearest released aspect ratio's bin)
    export_call_extras: ClassVar[dict[str, Any]] = {"guidance_scale": 1.0, "use_resolution_binning": False}
    # SanaPipeline hands the call's `generator` to the scheduler's step, so the fresh roll-out
    # noise comes from that generator (FLUX's and SD3's pipelines draw from torch's global one)
    step_noise_source: ClassVar[Literal["global", "call"]] = "call"

    def velocity_model(self, transformer: torch.nn.Module, role: str) -> TransformerVelocity:
        return SanaVelocity(transformer, self.variant.timestep_multiplier)

    def _encode(self, prompts: list[str], negative: bool) -> dict[str, torch.Tensor]:
        """The pipeline's positive (instruction + selected tokens) or negative ("" path) encoding."""
        with torch.no_grad():
            embeds, mask, neg_embeds, neg_mask = self.text_pipeline().encode_prompt(
                prompts,
                do_classifier_free_guidance=negative,
                negative_prompt="",
                device=self.text_device,
                clean_caption=False,  # the pipeline's default
                max_sequence_length=self.variant.max_sequence_length,
                complex_human_instruction=list(self.variant.complex_human_instruction),
            )
        if negative:
            embeds, mask = neg_embeds, neg_mask
        return {"prompt_embeds": embeds, "prompt_attention_mask": mask}

    def encode_text(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        return self._encode(list(prompts), negative=False)

    def encode_null(self) -> dict[str, torch.Tensor]:
        # not encode_text([""]): SanaPipeline encodes its negative prompt "" without the
        # instruction prefix and keeps its first tokens (encode_prompt's negative branch, which
        # runs beside a positive encoding of "" that is discarded)
        return self._encode([""], negative=True)


SanaAdapter.register_variants()
