"""The configuration tree. Every number a user may change is a field here, with a docstring.

Defaults reproduce shared/SID.md section 7 where it gives one; `validate()` checks what types
alone cannot, and its errors name the dotted field path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sid_ray.config.fields import option, section


class ConfigError(ValueError):
    """A user's configuration is invalid; the message names the field and what would fix it."""


def _require(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: {message}")


@dataclass
class LoraConfig:
    mode: Literal["full", "lora", "shared_base"] = option(
        "full",
        "full: F and G are full copies of T; lora: LoRA adapters on separate F and G copies; "
        "shared_base: one frozen base with two LoRA adapters (T = base with adapters off)",
    )
    rank: int = option(64, "LoRA rank")
    alpha: float = option(64.0, "LoRA alpha (the update is scaled by alpha / rank)")
    target_modules: list[str] = option([], "module names to adapt; empty = the adapter's default list")

    def validate(self, path: str) -> None:
        _require(self.rank > 0, f"{path}.rank", f"must be positive, got {self.rank}")


@dataclass
class FluxGuidanceConfig:
    """How FLUX teachers with a guidance embedding (FLUX.1-dev) apply the SiD guidance scales.

    FLUX.1-dev is guidance-distilled (SID.md 5): its guidance is an input embedding, one pass.
    "embedding" feeds a role's scale k to that embedding; "cfg" runs real two-pass CFG at scale k
    with the embedding held at `cfg_embedding`. The generator always runs in "embedding" mode at
    `sid.generator_guidance`, the value the export folds into the saved transformer.
    FLUX checkpoints without a guidance embedding always use two-pass CFG; other families ignore
    this section.
    """

    teacher: Literal["embedding", "cfg"] = option(
        "embedding", "how T applies sid.teacher_guidance (k4): embedding = one pass; cfg = two passes"
    )
    fake: Literal["embedding", "cfg"] = option(
        "embedding",
        "how F applies sid.fake_guidance_train/eval (k1, k2); Zero-CFG and Anti-CFG (k <= 0) need cfg",
    )
    cfg_embedding: float = option(1.0, "guidance embedding of both passes of a role in cfg mode")


@dataclass
class ModelConfig:
    name: str = option("gmm-ring", "registered teacher name, e.g. flux-dev, sd35-large, sana-600m, gmm-ring")
    path: str = option("", "local diffusers folder or hub id of the teacher; empty = the registry's default")
    dtype: Literal["float32", "bfloat16", "float16", "float64"] = option(
        "float32", "dtype of the networks' weights and compute"
    )
    resolution: int = option(512, "image resolution in pixels (DiT teachers)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    checkpoint_policy: Literal["all", "frozen"] = option(
        "all",
        "with gradient_checkpointing: all = every network's blocks; frozen = only passes whose weights "
        "take no gradient (T, and F inside G's update): the trained network keeps its activations, "
        "2 of the 4 recomputed forwards per iteration saved for one network's activation memory",
    )
    checkpoint_trained_share: float = option(
        0.0,
        "with checkpoint_policy=frozen: the share (0-1) of the trained network's blocks that are "
        "recomputed as well, evenly spread; between frozen (0) and all (1) in memory and speed",
    )
    lora: LoraConfig = section(LoraConfig, "LoRA and shared-base settings")
    flux_guidance: FluxGuidanceConfig = section(
        FluxGuidanceConfig, "FLUX.1-dev: guidance embedding or two-pass CFG per role (SID.md 5)"
    )
    init: Literal["pretrained", "random"] = option(
        "pretrained",
        "pretrained: load model.path; random: the released architecture with random weights built "
        "on the worker's device, and tiny text encoders / VAE with the real output widths (benchmarks "
        "and full-size tests without a download)",
    )
    load_text_encoders: bool = option(
        True,
        "build the teacher with its text encoders; training from data.embedding_cache runs its "
        "workers with false (tokenizers only: no encoder weights in memory; an export loads them then)",
    )
    toy_fit_steps: int = option(
        3000, "toy teachers only: Adam steps fitting the MLP copies of F and G to the exact velocity"
    )

    def validate(self, path: str) -> None:
        _require(bool(self.name), f"{path}.name", "must name a registered teacher")
        _require(self.resolution > 0, f"{path}.resolution", "must be positive")
        share = self.checkpoint_trained_share
        _require(0 <= share <= 1, f"{path}.checkpoint_trained_share", f"must be in [0, 1], got {share}")
        self.lora.validate(f"{path}.lora")


@dataclass
class DataAidedConfig:
    """SiDA (SID.md 6): real image-text pairs noised like the fakes; F's pooled last hidden states
    are the discriminator's logits. The reference's 40k/20k images are for 1-2 Mimg runs; short
    runs scale them down."""

    enabled: bool = option(False, "train with the diffusion-GAN terms (needs data.images)")
    discriminator_weight: float = option(1.0, "lsd: weight of the discriminator BCE in F's loss")
    generator_weight: float = option(
        0.01, "lsg_gan: weight of the non-saturating GAN loss BCE(D(fake_t), 1) w(t) in G's loss"
    )
    warmup_kimg: float = option(
        40.0, "G's loss is L_SiD until this many kimg, then 0.5 L_SiD + 0.5 lsg_gan L_GAN (reference: 40)"
    )
    generator_hold_kimg: float = option(
        20.0, "G takes no step until this many kimg: F learns to discriminate first (reference: 20)"
    )

    def validate(self, path: str) -> None:
        for name in ("discriminator_weight", "generator_weight", "warmup_kimg", "generator_hold_kimg"):
            _require(getattr(self, name) >= 0, f"{path}.{name}", "must be >= 0")


@dataclass
class SiDConfig:
    num_steps: int = option(4, "K: the generator's number of steps (k ~ U{1..K} per iteration)")
    k_block: int = option(
        1,
        "iterations in a row that share one k, in rounds of K blocks that take every k once (1 = "
        "SID.md: a fresh k each iteration, and F learns the mixture of the K outputs); longer blocks "
        "let F learn each k's outputs, so each step count, the K-step one included, is pushed to the "
        "data, not only their mixture (benchmarks/results/2026-12-02-few-step-gmm.md)",
    )
    k_law: Literal["uniform", "last"] = option(
        "uniform",
        "law of k: uniform = k ~ U{1..K} (SID.md); last = always k = K (F sees only the K-step "
        "outputs, which alone are pushed to the data; every G update runs all K steps)",
    )
    earlier_steps_gradient: float = option(
        0.0,
        "share of the generator loss's gradient that flows back through the roll-out's steps before "
        "the last (0 = SID.md: only the last step is trained by each update). With k_law last, 0.1-0.2 "
        "trains the earlier steps to place the K-step output's modes (configs/gmm_ring.yaml: 0.2; "
        "benchmarks/results/2026-12-03-few-step-probes.md)",
    )
    earlier_steps_recompute: bool = option(
        True,
        "with earlier_steps_gradient > 0: keep only each earlier step's input and recompute its "
        "forward in the generator update's backward (one more G forward per earlier step) instead "
        "of holding all K steps' activations at once (FLUX.1-dev at 1024 x 2 ran out of an H200's "
        "140 GB that way; benchmarks/results/flux-dev_h200_2026-12-02.md)",
    )
    rollout_time_shift: float = option(
        1.0,
        "s: the roll-out's step times are s u / (1 + (s - 1) u) with u = 1 - i/K (SD3's time "
        "shift; 1 = SID.md). Below 1 the later steps sit nearer the data (0.6, K = 4: t = 1, 0.64, "
        "0.38, 0.17): on the exact teachers a 4-step G then leaves fewer samples between modes "
        "(configs/gmm_ring.yaml: 0.6; 0.5 widened gmm-d3's modes; benchmarks/results/"
        "2026-12-03-few-step-probes.md). Evaluation, sampling and the exported pipeline use the same times",
    )
    rollout_noise: Literal["fresh", "fixed", "ddim"] = option(
        "fresh",
        "noise of roll-out steps after the first: fresh N(0, I), the first z, or DDIM's implied noise",
    )
    time_law: Literal["logit_normal", "uniform"] = option("logit_normal", "law of the loss time t")
    time_law_mean: float = option(math.log(2.0), "logit-normal mean of logit(t) (median t = 2/3)")
    time_law_std: float = option(1.6, "logit-normal standard deviation of logit(t)")
    weighting: str = option(
        "1-t", "generator loss weighting w(t): 1-t, (1-t)^2, 1/t, 1/t^2, (1-t)/t, ((1-t)/t)^2, 1/mean|x_g-xT|"
    )
    alpha: float = option(1.0, "alpha of the generator loss (1 for flow teachers)")
    fake_loss_scale: float = option(1.0, "ls: scale of the fake-score loss")
    generator_loss_scale: float = option(100.0, "lsg: scale of the generator loss")
    teacher_guidance: float = option(
        1.0, "k4: teacher CFG scale in the generator loss (FLUX: guidance embedding)"
    )
    fake_guidance_train: float = option(1.0, "k1: fake network CFG scale when it is trained (0 = Zero-CFG)")
    fake_guidance_eval: float = option(
        1.0, "k2: fake network CFG scale in the generator loss (< 0 = Anti-CFG)"
    )
    generator_guidance: float = option(
        1.0, "guidance the generator itself runs with (FLUX: its embedding, folded into the export; 1 = none)"
    )
    fake_updates: int = option(
        1, "F updates before each G update (1 = SID.md; more = a two time-scale variant, each on fresh noise)"
    )

    data_aided: DataAidedConfig = section(
        DataAidedConfig,
        "the data-aided variant (SiDA, SID.md 6): F doubles as a discriminator on data.images",
    )

    def validate(self, path: str) -> None:
        from sid_ray.sid.weighting import WEIGHTINGS

        self.data_aided.validate(f"{path}.data_aided")

        _require(self.num_steps >= 1, f"{path}.num_steps", f"must be >= 1, got {self.num_steps}")
        _require(self.k_block >= 1, f"{path}.k_block", f"must be >= 1 iteration, got {self.k_block}")
        _require(self.time_law_std > 0, f"{path}.time_law_std", "must be positive")
        share = self.earlier_steps_gradient
        _require(0 <= share <= 1, f"{path}.earlier_steps_gradient", f"must be in [0, 1], got {share}")
        shift = self.rollout_time_shift
        _require(shift > 0, f"{path}.rollout_time_shift", f"must be positive, got {shift}")
        _require(self.fake_updates >= 1, f"{path}.fake_updates", f"must be >= 1, got {self.fake_updates}")
        _require(
            self.weighting in WEIGHTINGS,
            f"{path}.weighting",
            f"unknown {self.weighting!r}; valid: {list(WEIGHTINGS)}",
        )

    def time_law_params(self) -> dict:
        if self.time_law == "logit_normal":
            return {"mean": self.time_law_mean, "std": self.time_law_std}
        return {}


@dataclass
class OptimConfig:
    generator_lr: float = option(1e-6, "learning rate of G (SID.md 7: 1e-6 with fp32 master weights)")
    fake_lr: float = option(1e-6, "learning rate of F")
    beta1: float = option(0.0, "Adam beta1 (SiD uses 0)")
    beta2: float = option(0.999, "Adam beta2")
    eps: float = option(1e-8, "Adam epsilon (1e-4 in pure bf16)")
    weight_decay: float = option(0.0, "Adam weight decay")
    grad_clip: float = option(0.0, "clip the gradient norm at this value; 0 = off")
    lr_schedule: Literal["constant", "cosine"] = option(
        "constant",
        "learning-rate schedule over the run's kimg: constant, or cosine decay to final_lr_fraction",
    )
    final_lr_fraction: float = option(
        0.1, "cosine schedule: the last learning rate as a fraction of the first"
    )

    def validate(self, path: str) -> None:
        for name in ("generator_lr", "fake_lr", "eps"):
            _require(getattr(self, name) > 0, f"{path}.{name}", "must be positive")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"{path}.beta1/beta2", "must be in [0, 1)")
        _require(0 <= self.final_lr_fraction <= 1, f"{path}.final_lr_fraction", "must be in [0, 1]")


@dataclass
class DataConfig:
    prompts: str = option(
        "",
        "prompt sources, ';'-separated: .txt (one a line), .jsonl/.json ({'prompt': ...}) or .parquet "
        "files, folders of them or globs; local paths or s3:// gs:// URIs; empty = built-in",
    )
    prompt_column: str = option("prompt", "column / key holding the prompt text in jsonl and parquet files")
    dedupe_prompts: bool = option(True, "drop repeated prompts (after stripping), keeping the first")
    min_prompt_chars: int = option(
        0, "prompts shorter than this (after stripping) are dropped and counted; 0 keeps the empty prompt"
    )
    max_prompt_chars: int = option(0, "prompts longer than this are dropped and counted; 0 = no limit")
    eval_prompt_fraction: float = option(
        0.0,
        "share of the prompts held out for evaluation, chosen by prompt hash (the same prompt is "
        "always on the same side), never trained on; 0 = none",
    )
    embedding_cache: str = option(
        "",
        "folder of cached prompt embeddings (parquet shards, jobs/embed.py); when set, training "
        "reads it (built first if missing or stale) and workers load no text encoders; "
        "empty = encode on the fly",
    )
    embed_workers: int = option(
        1,
        "actors that encode prompts into data.embedding_cache (each reserves a GPU with train.use_gpu, else a CPU)",
    )
    embed_batch_size: int = option(32, "prompts per text-encoder forward in the embedding job")
    stream_cpus: float = option(
        1.0,
        "CPUs the launcher keeps free beside the training workers for the Ray Data stream feeding "
        "them (a run that cannot keep them is refused at start instead of hanging); 0 = no check "
        "(autoscaling clusters whose nodes join later)",
    )
    embedding_shard_size: int = option(
        1024, "prompts per parquet shard of the embedding cache (the unit a resumed embedding job skips)"
    )
    shuffle_seed: int = option(0, "seed of the prompt shuffle")
    images: str = option(
        "",
        "data-aided runs (SID.md 6): image-text webdataset shards, a folder of .tar files, a glob or "
        "a brace pattern (shards/{000000..000009}.tar); their captions replace data.prompts",
    )
    image_keys: str = option(
        "png;jpg;jpeg;webp", "webdataset extensions tried for a sample's image, in order"
    )
    caption_keys: str = option("txt;caption", "webdataset extensions tried for a sample's caption, in order")
    latent_cache: str = option(
        "", "folder of the encoded (latent, caption) table of data.images; empty = $SID_RAY_CACHE/latents"
    )
    encode_workers: int = option(1, "actors that VAE-encode data.images (each reserves one CPU or GPU)")

    def validate(self, path: str) -> None:
        _require(self.encode_workers >= 1, f"{path}.encode_workers", "must be >= 1")
        for name in ("embed_workers", "embed_batch_size", "embedding_shard_size"):
            _require(getattr(self, name) >= 1, f"{path}.{name}", "must be >= 1")
        _require(self.stream_cpus >= 0, f"{path}.stream_cpus", "must be >= 0 (0 = no check)")
        for name in ("min_prompt_chars", "max_prompt_chars"):
            _require(getattr(self, name) >= 0, f"{path}.{name}", "must be >= 0 (0 = no limit)")
        _require(0 <= self.eval_prompt_fraction < 1, f"{path}.eval_prompt_fraction", "must be in [0, 1)")


@dataclass
class TrainConfig:
    total_kimg: float = option(10.0, "length of the run in thousands of generator images")
    batch_size: int = option(256, "global batch: micro_batch_size x accumulation x workers")
    micro_batch_size: int = option(8, "images per worker per forward pass")
    num_workers: int = option(1, "Ray Train workers (one per GPU)")
    use_gpu: bool = option(False, "one GPU per worker; false runs on CPU with gloo")
    zero_stage: Literal[2, 3] = option(3, "DeepSpeed ZeRO stage for F and G (the teacher is stage 3)")
    mixed_precision: Literal["fp32", "bf16"] = option("fp32", "bf16 = bf16 compute with fp32 master weights")
    checkpoint_every_kimg: float = option(1.0, "write a checkpoint every this many kimg")
    log_every: int = option(10, "iterations between progress lines and metric logs")
    ema_halflife_kimg: float = option(
        0.0, "half-life (kimg) of the generator's weight EMA that is evaluated and exported; 0 = no EMA"
    )
    seed: int = option(0, "seed of every random stream (noise, k, data order)")
    cpus_per_worker: float = option(1.0, "CPUs Ray reserves for each training worker")
    gpus_per_worker: float = option(1.0, "GPUs Ray reserves for each training worker when use_gpu")
    gpu_memory_gib: float = option(
        0.0,
        "memory of one GPU in GiB (A100/H100 80 GB: 80, H200: 140); when set, a use_gpu run whose "
        "planned memory per GPU (jobs/plan.py) does not fit is refused before any worker starts; 0 = unknown",
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = option(
        "PACK", "how Ray places the workers across nodes (STRICT_SPREAD: one worker per node)"
    )
    storage_path: str = option(
        "",
        "where Ray Train keeps the run's checkpoints (<storage_path>/<name>): empty = output_dir; "
        "s3://bucket/prefix or gs://bucket/prefix = object storage that every node reaches "
        "(credentials, region and endpoint from the environment, as pyarrow reads them: AWS_*, "
        "AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS); the same name resumes from there",
    )
    max_failures: int = option(3, "worker-group failures the run recovers from (from its last checkpoint)")
    keep_checkpoints: int = option(2, "checkpoints kept in storage (the newest ones); 0 = all")
    attention_backend: Literal["auto", "flash", "efficient", "cudnn", "math"] = option(
        "auto",
        "scaled-dot-product attention kernel tried first on GPUs, torch's others serving the calls it "
        "cannot (masked text-encoder attention): auto = flash, then memory-efficient, then math, no "
        "cuDNN; cudnn = cuDNN's Hopper kernel first (compiled FLUX.1-dev 5% faster at 512, 24% at 1024; "
        "eager no faster); on CPU torch picks",
    )
    compile: Literal["off", "blocks"] = option(
        "off",
        "torch.compile: blocks = each transformer block class compiled once (static shapes; the first "
        "iterations pay minutes of compilation, then fused kernels); off = eager",
    )
    compile_backend: str = option(
        "inductor",
        "torch.compile backend with train.compile=blocks (aot_eager: trace without codegen, to debug)",
    )
    export_pipeline: bool = option(
        True,
        "write a stock diffusers pipeline folder of G (export/pipeline) in the run's last checkpoint; "
        "false keeps only export/generator.safetensors (e.g. benchmarks: 24 GB at FLUX size)",
    )
    generator_in_checkpoints: Literal["auto", "always", "never"] = option(
        "auto",
        "write the consolidated generator (export/generator.safetensors) into every checkpoint: "
        "auto = when it is under 2 GiB (LoRA weights, toys); the final checkpoint always has it",
    )

    def validate(self, path: str) -> None:
        per_step = self.micro_batch_size * self.num_workers
        _require(self.micro_batch_size > 0, f"{path}.micro_batch_size", "must be positive")
        _require(self.num_workers > 0, f"{path}.num_workers", "must be positive")
        _require(
            self.batch_size % per_step == 0,
            f"{path}.batch_size",
            f"{self.batch_size} is not a multiple of micro_batch_size x num_workers = {per_step}",
        )
        _require(self.total_kimg > 0, f"{path}.total_kimg", "must be positive")
        _require(self.ema_halflife_kimg >= 0, f"{path}.ema_halflife_kimg", "must be >= 0 (0 = off)")
        _require(self.cpus_per_worker > 0, f"{path}.cpus_per_worker", "must be positive")
        _require(self.gpu_memory_gib >= 0, f"{path}.gpu_memory_gib", "must be >= 0 (0 = unknown)")
        _require(self.max_failures >= 0, f"{path}.max_failures", "must be >= 0")
        _require(self.keep_checkpoints >= 0, f"{path}.keep_checkpoints", "must be >= 0")
        scheme = self.storage_path.split("://")[0] if "://" in self.storage_path else ""
        _require(
            scheme in ("", "s3", "gs", "gcs", "file"),
            f"{path}.storage_path",
            f"{self.storage_path!r}: use s3://bucket/prefix, gs://bucket/prefix or a folder",
        )

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size * self.num_workers)


@dataclass
class EvalConfig:
    every_kimg: float = option(
        0.0,
        "evaluate the (EMA) generator every this many kimg during training, on the workers, and at "
        "the run's end; 0 = no in-training evaluation (jobs/evaluate.py evaluates afterwards)",
    )
    num_samples: int = option(1000, "samples for FID and alignment")
    seed: int = option(1234, "seed of the evaluation noise and prompts")
    batch_size: int = option(
        50,
        "samples per generator call; the set is cut into chunks of this size, shared round-robin "
        "over the ranks (a chunk's images do not depend on the number of ranks)",
    )
    grid_samples: int = option(10, "samples in the grid logged with each evaluation")
    fid_reference: str = option(
        "",
        "real teachers: reference statistics file (mu, sigma) of FID's Inception features "
        "(python jobs/evaluate.py --reference-stats FILE --images FOLDER)",
    )
    inception_weights: str = option(
        "", "real teachers: local copy of FID's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth)"
    )
    clip_model: str = option("", "real teachers: local transformers CLIP folder for the CLIP score")
    max_fid: float = option(
        0.0, "an evaluation whose FID exceeds this marks the run diverged and stops it; 0 = only non-finite"
    )
    max_loss: float = option(
        1e8, "a logged |loss| above this (or a non-finite one) marks the run diverged and stops it; 0 = off"
    )

    def validate(self, path: str) -> None:
        _require(self.num_samples > 0, f"{path}.num_samples", "must be positive")
        _require(self.batch_size > 0, f"{path}.batch_size", "must be positive")
        _require(self.every_kimg >= 0, f"{path}.every_kimg", "must be >= 0 (0 = off)")
        for name in ("max_fid", "max_loss", "grid_samples"):
            _require(getattr(self, name) >= 0, f"{path}.{name}", "must be >= 0")


@dataclass
class TrackingConfig:
    mlflow_uri: str = option(
        "",
        "MLflow tracking URI (sqlite:///... or http://...); empty = MLFLOW_TRACKING_URI when set, "
        "else no MLflow (the shipped configs use sqlite:///runs/mlflow.db); one that does not answer "
        "is refused before any worker starts",
    )
    experiment: str = option("sid_ray", "MLflow experiment name")
    run_id: str = option(
        "",
        "log into this existing MLflow run instead of opening one (a sweep's trial run, opened "
        "nested under the sweep's parent run); a resumed run keeps the id its checkpoint holds",
    )
    log_model: bool = option(
        True, "log the final exported generator to MLflow (mlflow.diffusers flavour for pipeline folders)"
    )

    def validate(self, path: str) -> None:
        _require(
            not self.mlflow_uri.startswith(("file:", "/", "./")),
            f"{path}.mlflow_uri",
            "MLflow's file store is not supported; use sqlite:///path/mlflow.db or an http:// server",
        )


@dataclass
class RunConfig:
    name: str = option("sid", "run name; starting a run with an existing name resumes it")
    output_dir: str = option("runs", "folder that holds one sub-folder per run")
    model: ModelConfig = section(ModelConfig, "the teacher and how F and G are built from it")
    sid: SiDConfig = section(SiDConfig, "the SiD method (shared/SID.md)")
    optim: OptimConfig = section(OptimConfig, "optimisers of F and G")
    data: DataConfig = section(DataConfig, "prompt and image data")
    train: TrainConfig = section(TrainConfig, "training length, batch and distribution")
    eval: EvalConfig = section(EvalConfig, "evaluation")
    tracking: TrackingConfig = section(TrackingConfig, "experiment tracking")

    def validate(self, path: str = "") -> None:
        _require(
            bool(self.name) and "/" not in self.name,
            "name",
            f"must be a plain folder name, got {self.name!r}",
        )
        for name in ("model", "sid", "optim", "data", "train", "eval", "tracking"):
            getattr(self, name).validate(name)
        _require(
            not self.sid.data_aided.enabled or bool(self.data.images),
            "sid.data_aided.enabled",
            "the data-aided variant needs real image-text pairs: set data.images to webdataset shards",
        )
