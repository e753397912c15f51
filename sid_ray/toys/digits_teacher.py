"""Training the digits teacher: a tiny FLUX.1 pipeline that draws sklearn's handwritten digits.

Every part is a real diffusers/transformers class, so the result is a stock FluxPipeline folder:
- text encoders: the tiny CLIP and T5 of `sid_ray.models.tiny.common` with their offline
  tokenizers, random and frozen, as FLUX's are frozen; ten prompts and "" are all they must tell
  apart, which random encoders do;
- VAE: a two-level AutoencoderKL (16x16 pixels -> 8x8x4 latents, FLUX packs them into 16 tokens of
  16 channels), trained here as a plain autoencoder (reconstruction plus a small KL), with FLUX's
  latent normalisation (scaling_factor, shift_factor) measured on the digits' latents;
- transformer: a FluxTransformer2DModel without guidance embedding, trained with flow matching
  (x_t = (1 - t) x0 + t eps, target v = eps - x0, SID.md 1) through the FLUX adapter's own
  velocity (packing, position ids, timestep scale), the prompt dropped to "" 10% of the time so
  classifier-free guidance works; an EMA of its weights is saved;
- scheduler: FlowMatchEulerDiscreteScheduler without shift, so N-step sampling is uniform Euler.

Deterministic: one seed fixes initialisations, batches, noise and dropout; training runs on one
thread (tiny networks gain nothing from more, and a shared machine loses a lot).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

from sid_ray.config.schema import ModelConfig
from sid_ray.models.conditioning import TensorConditioning
from sid_ray.models.flux import FluxAdapter
from sid_ray.models.tiny.common import clip_tokenizer, t5_tokenizer, tiny_clip_text_model, tiny_t5_encoder
from sid_ray.toys.digits_data import DIGITS_RESOLUTION, NUM_DIGITS, digit_prompt, load_digit_images

TEXT_WIDTH = 32
LATENT_CHANNELS = 4
#: "a handwritten seven" is 21 tokens with the word marks and </s> (the T5 tokenizer is
#: character-level); every text token costs attention, so no more than needed
T5_MAX_LENGTH = 24


@dataclass(frozen=True)
class DigitsTeacherRecipe:
    """Everything that determines the teacher folder (its hash names the cache folder)."""

    seed: int = 0
    vae_channels: tuple[int, int] = (16, 32)
    vae_steps: int = 600
    vae_batch_size: int = 64
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-6
    num_layers: int = 2
    num_single_layers: int = 2
    attention_head_dim: int = 16
    num_attention_heads: int = 4
    steps: int = 8000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.998
    prompt_dropout: float = 0.1

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def digits_vae(recipe: DigitsTeacherRecipe) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=recipe.vae_channels,
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=DIGITS_RESOLUTION,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def digits_transformer(recipe: DigitsTeacherRecipe) -> FluxTransformer2DModel:
    head = recipe.attention_head_dim
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,  # 2x2 packing
        num_layers=recipe.num_layers,
        num_single_layers=recipe.num_single_layers,
        attention_head_dim=head,
        num_attention_heads=recipe.num_attention_heads,
        joint_attention_dim=TEXT_WIDTH,
        pooled_projection_dim=TEXT_WIDTH,
        guidance_embeds=False,  # real two-pass CFG, which the prompt dropout trains for
        axes_dims_rope=[head // 4, 3 * head // 8, 3 * head // 8],  # (text, row, column), sums to head
    )


def uniform_euler_scheduler() -> FlowMatchEulerDiscreteScheduler:
    # no shift, static: N steps are t = 1 - i/N, the schedule the evaluation table names
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


def train_vae(
    vae: AutoencoderKL, images: torch.Tensor, recipe: DigitsTeacherRecipe, log: Callable[[str], None]
) -> float:
    """Fit the autoencoder to the digits; set FLUX's latent normalisation; return the final MSE.

    Trains on the device of `vae`; the batches are drawn on the CPU, so every device sees the same
    ones."""
    device = next(vae.parameters()).device
    x_all = images.to(device) * 2 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=recipe.vae_lr)
    gen = torch.Generator().manual_seed(recipe.seed + 10)
    vae.train()
    for step in range(recipe.vae_steps):
        x = x_all[torch.randint(0, len(x_all), (recipe.vae_batch_size,), generator=gen).to(device)]
        posterior = vae.encode(x).latent_dist
        # drawn here, not by posterior.sample(gen): a CPU generator cannot draw on a GPU
        noise = torch.randn(posterior.mean.shape, generator=gen).to(device)
        recon = vae.decode(posterior.mean + posterior.std * noise).sample
        loss = F.mse_loss(recon, x) + recipe.vae_kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == recipe.vae_steps - 1:
            log(f"vae step {step}: loss {loss.item():.5f}")
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        z = vae.encode(x_all).latent_dist.mode()
        mse = F.mse_loss(vae.decode(z).sample, x_all).item()
    # FLUX's convention z_model = (z - shift) * scale, measured so that the digits' latents have
    # zero mean and unit std, the scale the flow's N(0, I) noise assumes
    vae.register_to_config(shift_factor=float(z.mean()), scaling_factor=float(1 / z.std()))
    return mse


def _lr_factor(step: int, recipe: DigitsTeacherRecipe) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))  # cosine to a tenth


def train_flow(
    adapter: FluxAdapter,
    latents: torch.Tensor,
    labels: torch.Tensor,
    recipe: DigitsTeacherRecipe,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, float]:
    """Flow matching on (latents, labels) through `adapter.teacher.velocity`; returns (EMA, last loss).

    Trains on the device of `latents`; every random draw is made on the CPU, so the batches, noise
    and dropout are the same on every device."""
    device = latents.device
    transformer = adapter.transformer.requires_grad_(True).train()
    ema = copy.deepcopy(transformer).requires_grad_(False).eval()
    table = adapter.encode_prompts([digit_prompt(d) for d in range(NUM_DIGITS)])  # row d = digit d
    null = adapter.encode_prompts([""]).tensors
    # row NUM_DIGITS = the empty prompt, which dropped prompts become
    rows = {k: torch.cat([v, null[k]]) for k, v in table.tensors.items()}
    opt = torch.optim.AdamW(transformer.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, recipe))
    gen = torch.Generator().manual_seed(recipe.seed + 20)
    smoothed = float("nan")
    for step in range(recipe.steps):
        idx = torch.randint(0, len(latents), (recipe.batch_size,), generator=gen)
        x0 = latents[idx.to(device)]
        eps = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.rand(recipe.batch_size, generator=gen).to(device)  # uniform: every Euler step is trained
        drop = torch.rand(recipe.batch_size, generator=gen) < recipe.prompt_dropout
        which = torch.where(drop, NUM_DIGITS, labels[idx]).to(device)
        cond = TensorConditioning({k: v[which] for k, v in rows.items()}, table.null)
        tb = t.view(-1, 1, 1)
        x_t = (1 - tb) * x0 + tb * eps
        loss = F.mse_loss(adapter.teacher.velocity(x_t, t, cond), eps - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(recipe.ema_decay, (1 + step) / (10 + step))  # short memory while weights move fast
            for p_ema, p in zip(ema.parameters(), transformer.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        smoothed = loss.item() if step == 0 else 0.98 * smoothed + 0.02 * loss.item()
        if step % 250 == 0 or step == recipe.steps - 1:
            log(f"flow step {step}: loss {smoothed:.4f}")
    return ema, smoothed


def build_digits_teacher(
    folder: str | Path,
    recipe: DigitsTeacherRecipe = DigitsTeacherRecipe(),
    log: Callable[[str], None] = print,
    device: str | torch.device = "cpu",
) -> Path:
    """Train the digits teacher and save it as a FluxPipeline folder at `folder`.

    The shipped folder is built on the CPU (deterministic there); `device="cuda"` trains the same
    recipe faster for experiments, with the same random draws but not bit-identical weights."""
    folder = Path(folder)
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(recipe.seed)
            images, labels = load_digit_images(DIGITS_RESOLUTION)
            tok_2 = t5_tokenizer(model_max_length=T5_MAX_LENGTH)
            components = {
                "scheduler": uniform_euler_scheduler(),
                "vae": digits_vae(recipe),
                "text_encoder": tiny_clip_text_model(hidden_size=TEXT_WIDTH, seed=recipe.seed + 1),
                "tokenizer": clip_tokenizer(),
                "text_encoder_2": tiny_t5_encoder(
                    vocab_size=len(tok_2), d_model=TEXT_WIDTH, seed=recipe.seed + 2
                ),
                "tokenizer_2": tok_2,
                "transformer": digits_transformer(recipe),
            }
            for name in ("text_encoder", "text_encoder_2"):
                components[name].requires_grad_(False)
            for name in ("vae", "text_encoder", "text_encoder_2", "transformer"):
                components[name].to(device)
            vae_mse = train_vae(components["vae"], images, recipe, log)
            vae_seconds = time.perf_counter() - start
            config = ModelConfig(name="digits-flux", resolution=DIGITS_RESOLUTION)
            adapter = FluxAdapter(config, components)
            latents = adapter.encode_images(images.to(device))  # (N, 16, 16): packed, normalised
            ema, flow_loss = train_flow(adapter, latents, labels, recipe, log)
        components["transformer"] = ema
        for name in ("vae", "text_encoder", "text_encoder_2", "transformer"):
            components[name].to("cpu")
        FluxPipeline(**components).save_pretrained(folder, safe_serialization=True)
    finally:
        torch.set_num_threads(previous_threads)
    report = {
        "recipe": asdict(recipe),
        "vae_reconstruction_mse": vae_mse,
        "final_flow_loss": flow_loss,
        "vae_seconds": round(vae_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "transformer_parameters": sum(p.numel() for p in ema.parameters()),
        # where the weights come from: this function, from the seed, nothing downloaded
        "built_by": f"sid_ray.toys.digits_teacher.build_digits_teacher (scripts/train_digits_teacher.py), "
        f"trained from seed {recipe.seed} on sklearn's digits, {device}, 1 torch thread, torch {torch.__version__}",
    }
    (folder / "digits_teacher.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"digits teacher saved to {folder}: {report}")
    return folder
