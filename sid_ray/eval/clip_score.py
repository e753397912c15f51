"""CLIP score through torchmetrics, from a local CLIP folder (real teachers' alignment metric).

torchmetrics' `CLIPScore` downloads OpenAI checkpoints by hub name; it also accepts a callable
returning (model, processor), which is how a local folder (saved by transformers'
`save_pretrained`: CLIPModel weights, tokenizer, image processor) is used here, with no network.
The score is torchmetrics' own: 100 * cosine(image features, text features), averaged, floored at 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchmetrics.multimodal.clip_score import CLIPScore

from sid_ray.config.schema import ConfigError


def _require_clip_folder(folder: Path) -> None:
    # transformers 5 writes processor_config.json; released OpenAI folders carry preprocessor_config.json
    has_processor = any((folder / n).is_file() for n in ("processor_config.json", "preprocessor_config.json"))
    missing = ([] if (folder / "config.json").is_file() else ["config.json"]) + (
        [] if has_processor else ["processor_config.json or preprocessor_config.json"]
    )
    if not folder.is_dir() or missing:
        what = "does not exist" if not folder.is_dir() else f"lacks {missing}"
        raise ConfigError(
            f"CLIP folder {str(folder)!r} {what}: it must be a local transformers CLIP folder "
            "(CLIPModel.save_pretrained + CLIPProcessor.save_pretrained); sid_ray does not download it"
        )


class _ProjectedFeatures(torch.nn.Module):
    """CLIPModel whose get_*_features return the projected embeddings as tensors.

    transformers 5 returns a BaseModelOutputWithPooling (the projection in `pooler_output`) where
    torchmetrics 1.9 expects the tensor transformers 4 returned.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config  # torchmetrics reads text_config.max_position_embeddings

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return _tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return _tensor(self.model.get_text_features(*args, **kwargs))


def _tensor(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class LocalCLIPScore:
    """CLIP score of images (B, 3, H, W) in [0, 1] and their prompts, from `folder`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        _require_clip_folder(self.folder)
        self.metric = CLIPScore(model_name_or_path=self._load)

    def _load(self):
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(self.folder, local_files_only=True, use_safetensors=True)
        processor = CLIPProcessor.from_pretrained(self.folder, local_files_only=True)
        return _ProjectedFeatures(model.eval()), processor

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str], batch_size: int = 64) -> float:
        self.metric.reset()
        for start in range(0, len(prompts), batch_size):
            # the CLIP image processor rescales by 1/255 itself: give it 0..255 pixels
            batch = (images[start : start + batch_size].clamp(0, 1) * 255).round().to(torch.uint8)
            self.metric.update(batch, list(prompts[start : start + batch_size]))
        return float(self.metric.compute())
