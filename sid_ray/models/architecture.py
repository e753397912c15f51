"""What a teacher's transformer is made of, counted on the meta device (no weights, no memory).

Sizing a run (`sid_ray.train.memory_plan`, `jobs/plan.py`) needs the parameter count of the
released transformer, of one LoRA adapter at the run's rank and targets, of its largest block
(what ZeRO-3 gathers at once), the token stream the blocks carry at the run's resolution, and the
released text encoders' and VAE's sizes (each family states them).
The transformer is built from the registered release's config with diffusers' own class, and the
LoRA adapter is injected with the same `add_lora` the runs use, so the counts are the runs' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from sid_ray.config.schema import ConfigError, ModelConfig
from sid_ray.models.lora import add_lora
from sid_ray.models.registry import adapter_class

# the ModuleLists whose entries diffusers checkpoints one by one (FLUX, SD3, SANA)
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")


@dataclass(frozen=True)
class Architecture:
    name: str
    parameters: int  # the base transformer
    lora_parameters: int  # one adapter (A and B of every targeted Linear) at the run's rank
    blocks: int  # checkpointed transformer blocks
    largest_block_parameters: int
    width: int  # hidden size of the token stream between blocks
    image_tokens: int  # per image at the run's resolution
    text_tokens: int  # text tokens in the same attention sequence (0: cross-attention)
    text_encoder_parameters: int = 0  # the released text encoders (0: model.init=random's tiny ones)
    vae_parameters: int = 0

    @property
    def tokens(self) -> int:
        return self.image_tokens + self.text_tokens


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _blocks(transformer: nn.Module) -> list[nn.Module]:
    return [block for name in BLOCK_LISTS for block in getattr(transformer, name, [])]


def describe(model: ModelConfig) -> Architecture:
    """The architecture of `model.name` at `model.resolution` and `model.lora` (rank, targets)."""
    cls = adapter_class(model.name)
    released = getattr(cls, "released_config_for", None)
    config = released(model.name) if released else None
    if config is None or getattr(cls, "transformer_class", None) is None:
        raise ConfigError(f"model.name: {model.name} has no transformer architecture to size")
    with torch.device("meta"):
        transformer = cls.transformer_class.from_config(config)
        base = _count(transformer)
        blocks = _blocks(transformer)
        largest = max((_count(b) for b in blocks), default=base)
        targets = list(model.lora.target_modules) or list(cls.default_lora_targets)
        lora = sum(p.numel() for p in add_lora(transformer, model.lora, targets, "sizing").values())
    latent = model.resolution // cls.vae_factor // cls.latent_patch(config)
    # random weights come with tiny text encoders and VAE (sid_ray.models.random_weights): nothing
    parts = {} if model.init == "random" else cls.released_part_parameters
    return Architecture(
        name=model.name,
        parameters=base,
        lora_parameters=lora,
        blocks=len(blocks),
        largest_block_parameters=largest,
        width=config["num_attention_heads"] * config["attention_head_dim"],
        image_tokens=latent * latent,
        text_tokens=cls.joint_text_tokens(model.name),
        text_encoder_parameters=sum(n for part, n in parts.items() if part.startswith("text_encoder")),
        vae_parameters=parts.get("vae", 0),
    )


# --- the released text encoders, counted -------------------------------------------------------
# Their architectures as the public config.json files give them: only the fields that decide the
# parameter count (the rest are transformers' defaults). The families' `released_part_parameters`
# (memory plan constants) are checked against these counts by tests/cluster/test_text_encoder_sizes.py.
CLIP_L = {  # openai/clip-vit-large-patch14, text_config; FLUX.1-dev and SD3's text_encoder/config.json
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
}
CLIP_BIGG = {  # laion/CLIP-ViT-bigG-14-laion2B-39B-b160k text tower; SD3's text_encoder_2/config.json
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "projection_dim": 1280,
}
T5_XXL = {  # google/t5-v1_1-xxl config.json; FLUX.1-dev text_encoder_2, SD3 text_encoder_3 (encoder only)
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "feed_forward_proj": "gated-gelu",
}
GEMMA2_2B = {  # google/gemma-2-2b-it config.json; SANA's text_encoder/config.json (Gemma2Model)
    "vocab_size": 256000,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
}
# family -> {part: (transformers model class, config class, config)}
RELEASED_TEXT_ENCODERS: dict[str, dict[str, tuple[str, str, dict]]] = {
    "flux": {
        "text_encoder": ("CLIPTextModel", "CLIPTextConfig", CLIP_L),
        "text_encoder_2": ("T5EncoderModel", "T5Config", T5_XXL),
    },
    "sd3": {  # SD3 / SD3.5: both CLIPs with their text projections (768 and 1280)
        "text_encoder": ("CLIPTextModelWithProjection", "CLIPTextConfig", {**CLIP_L, "projection_dim": 768}),
        "text_encoder_2": ("CLIPTextModelWithProjection", "CLIPTextConfig", CLIP_BIGG),
        "text_encoder_3": ("T5EncoderModel", "T5Config", T5_XXL),
    },
    "sana": {"text_encoder": ("Gemma2Model", "Gemma2Config", GEMMA2_2B)},
}


@cache
def text_encoder_parameters(family: str, part: str) -> int:
    """Parameters of a released text encoder, built from its config on the meta device."""
    import transformers

    model_class, config_class, values = RELEASED_TEXT_ENCODERS[family][part]
    config = getattr(transformers, config_class)(**values)
    with torch.device("meta"):
        return _count(getattr(transformers, model_class)(config))
