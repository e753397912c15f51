"""The digits classifier: trained by the project, accurate on held-out digits, deterministic, cached."""

from __future__ import annotations

import pytest
import torch

from sid_ray.eval.digits_classifier import (
    ClassifierFeatures,
    ClassifierRecipe,
    load_digits_classifier,
    prompted_digit_probability,
    train_digits_classifier,
)
from sid_ray.eval.fid import FeatureFID
from sid_ray.toys.digits_data import load_digit_images, train_test_split_indices

RECIPE = ClassifierRecipe()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    model, accuracy = train_digits_classifier(RECIPE)
    return model, accuracy, cache


@pytest.fixture(scope="module")
def held_out():
    images, labels = load_digit_images(RECIPE.resolution)
    _, test_idx = train_test_split_indices(len(labels), RECIPE.test_fraction, RECIPE.seed)
    return images[test_idx], labels[test_idx]


def test_held_out_accuracy(trained) -> None:
    _, accuracy, _ = trained
    assert accuracy >= 0.95


def test_prompted_digit_probability_separates_right_and_wrong_prompts(trained, held_out) -> None:
    model, _, _ = trained
    images, labels = held_out
    right = prompted_digit_probability(model, images, labels)
    wrong = prompted_digit_probability(model, images, (labels + 1) % 10)
    assert right.shape == (len(labels),)
    assert right.mean() > 0.9
    assert wrong.mean() < 0.05


def test_cache_reproduces_the_trained_weights(trained, held_out) -> None:
    model, _, cache = trained
    first = load_digits_classifier(RECIPE, cache_dir=cache)  # trains again (deterministic) and saves
    assert len(list(cache.glob("digits_classifier_*.safetensors"))) == 1
    second = load_digits_classifier(RECIPE, cache_dir=cache)  # loads the file
    images, _ = held_out
    with torch.no_grad():
        assert torch.equal(model(images), first(images))
        assert torch.equal(first(images), second(images))


def test_classifier_fid_ranks_real_above_corrupted(trained) -> None:
    model, _, _ = trained
    images, labels = load_digit_images(RECIPE.resolution)
    fid = FeatureFID(ClassifierFeatures(model))
    fid.add_real(images[::2])
    fid.add_fake(images[1::2])  # other real digits: near 0
    real_vs_real = fid.compute()
    fid.reset_fake()
    blurred = torch.nn.functional.avg_pool2d(images[1::2], 3, stride=1, padding=1)
    fid.add_fake(blurred)
    real_vs_blurred = fid.compute()
    fid.reset_fake()
    only_ones = images[labels == 1]  # one class only: wrong diversity
    fid.add_fake(only_ones)
    real_vs_ones = fid.compute()
    assert real_vs_real < real_vs_blurred and real_vs_real < real_vs_ones
    assert real_vs_real < 0.2 * real_vs_ones
