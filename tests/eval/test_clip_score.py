"""CLIP score from a local folder: a tiny CLIP built offline, against cosine similarities computed here."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from sid_ray.config.schema import ConfigError
from sid_ray.eval.clip_score import LocalCLIPScore
from sid_ray.models.tiny.common import clip_tokenizer


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": len(tokenizer) - 2,
            "eos_token_id": len(tokenizer) - 1,
            "pad_token_id": len(tokenizer) - 1,
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
    torch.manual_seed(0)
    model = CLIPModel(config)
    with torch.no_grad():
        # a random CLIP's image and text embeddings are nearly orthogonal, and torchmetrics floors
        # the mean score at 0; a shared component (equal final-norm biases, equal projections)
        # makes the scores positive, so the test sees them, while inputs still move them
        model.vision_model.post_layernorm.bias.fill_(1.0)
        model.text_model.final_layer_norm.bias.fill_(1.0)
        model.text_projection.weight.copy_(model.visual_projection.weight)
    model.save_pretrained(folder, safe_serialization=True)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


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
