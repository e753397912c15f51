"""CLIP score from a local folder: a tiny CLIP built offline, against cosine similarities computed here."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from sid_ray.config.schema import ConfigError
from sid_ray.eval.clip_score import LocalCLIPScore
from sid_ray.eval.stand_in_files import write_tiny_clip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def reference_clip_score(folder, images: torch.Tensor, prompts: list[str]) -> float:
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        pixels = processor(images=list((images * 255).round().to(torch.uint8)), return_tensors="pt")[
            "pixel_values"
        ]
        text = processor(text=prompts, return_tensors="pt", padding=True)
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    return float((100 * cos).mean())


def test_clip_score_matches_cosine_reference(clip_folder) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 40, 40, generator=g)
    prompts = ["a red apple", "a cat", "a lighthouse at dusk", "ramen", "a horse", "a sign"]
    score = LocalCLIPScore(clip_folder)
    ours = score(images, prompts, batch_size=4)
    reference = reference_clip_score(clip_folder, images, prompts)
    assert 0 < reference < 100
    assert ours == pytest.approx(reference, abs=1e-3)
    # another pairing gives another score: the prompts matter
    assert score(images, prompts[::-1], batch_size=4) != pytest.approx(ours, abs=1e-3)


def test_missing_clip_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalCLIPScore(tmp_path / "no-clip")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="preprocessor_config.json"):
        LocalCLIPScore(tmp_path / "half")
