"""Stand-ins for the files a real teacher's evaluation reads, built offline.

In-training evaluation of a real teacher needs three local files (`sid_ray.eval.scorers.scorer_for`):
`eval.clip_model` (a transformers CLIP folder), `eval.inception_weights` (torch-fidelity's
InceptionV3 state dict, pt_inception-2015-12-05-6726825d.pth) and `eval.fid_reference` (FID's
statistics of a real image set). None can be downloaded here, so tests and the full-size GPU
test use a tiny CLIP with the real classes, an InceptionV3 with random weights saved in the
release's format, and reference statistics of random images under it. The scores mean nothing;
the code path that computes them is the real one.

    python -m sid_ray.eval.stand_in_files OUT    # writes OUT/{clip,pt_inception.pth,reference.safetensors}
                                                    # and prints the three eval.* settings
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sid_ray.models.tiny.common import clip_tokenizer


def write_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny CLIPModel + CLIPProcessor (byte-level tokenizer, 32 px images), saved to `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = clip_tokenizer()
    n = len(tokenizer)
    config = CLIPConfig(
        text_config={
            "vocab_size": n,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": n - 2,
            "eos_token_id": n - 1,
            "pad_token_id": n - 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    with torch.no_grad():
        # a random CLIP's image and text embeddings are nearly orthogonal, and torchmetrics floors
        # the mean score at 0; a shared component (equal final-norm biases, equal projections)
        # makes the scores positive, so a test sees them, while inputs still move them
        model.vision_model.post_layernorm.bias.fill_(1.0)
        model.text_model.final_layer_norm.bias.fill_(1.0)
        model.text_projection.weight.copy_(model.visual_projection.weight)
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_random_inception(path: str | Path, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3, randomly initialised, its state dict saved like the release."""
    from sid_ray.eval.torch_fidelity_import import register_without_package_init

    register_without_package_init()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # keep the random init
            return None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    empty = path.with_suffix(".empty")
    torch.save({}, empty)
    torch.manual_seed(seed)
    net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    for module in net.modules():
        # He-initialised convolutions: with torch's default init the signal fades through the 94
        # layers and every image gets the same features (spread 1e-9), so FID would be 0 always
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(
            module, torch.nn.BatchNorm2d
        ):  # running statistics away from (0, 1), as trained ones are
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), path)
    empty.unlink()
    return path


def write_random_reference(
    path: str | Path, inception_weights: str | Path, images: int = 16, seed: int = 0
) -> Path:
    """FID reference statistics of smooth random images (in [0, 1]) under `inception_weights`,
    named for that weights file as `jobs/evaluate.py --reference-stats` names them."""
    from sid_ray.eval.fid import InceptionFeatures
    from sid_ray.eval.reference_stats import ReferenceStats

    generator = torch.Generator().manual_seed(seed)
    small = torch.rand(images, 3, 8, 8, generator=generator)
    real = torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        features = InceptionFeatures(inception_weights).eval()(real).double()
    name = f"inception:{Path(inception_weights).name}"
    return ReferenceStats.of_features(features, name).save(path)


def write_eval_files(folder: str | Path) -> dict[str, str]:
    """All three stand-ins in `folder`; the eval.* settings that point at them."""
    folder = Path(folder)
    weights = write_random_inception(folder / "pt_inception.pth")
    return {
        "eval.clip_model": str(write_tiny_clip(folder / "clip")),
        "eval.inception_weights": str(weights),
        "eval.fid_reference": str(write_random_reference(folder / "reference.safetensors", weights)),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sid_ray.eval.stand_in_files OUT")
    print(" ".join(f"{k}={v}" for k, v in write_eval_files(sys.argv[1]).items()))
