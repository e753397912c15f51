"""The generated exact teachers (sid_ray.toys.mixture_family): seeded, shaped as specified,
registered by name and by spec, and read by posterior responsibility."""

import math

import pytest
import torch

from sid_ray.config import load_config
from sid_ray.config.schema import ConfigError
from sid_ray.eval.toy_metrics import mode_masses
from sid_ray.models.registry import adapter_class, build_adapter, default_prompts
from sid_ray.toys.gaussian_mixture import GaussianMixture
from sid_ray.toys.mixture_family import PRESETS, MixtureSpec, generated_mixture, parse_spec, spec_name


def test_the_same_spec_gives_the_same_mixture_and_another_seed_another():
    a, b = generated_mixture(PRESETS["gmm-d5"]), generated_mixture(PRESETS["gmm-d5"])
    for field in ("means", "stds", "class_weights", "class_prior"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    other = generated_mixture(MixtureSpec(dim=5, modes=6, classes=2, seed=99))
    assert not torch.allclose(a.means, other.means)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_generated_mixture_has_the_shape_its_spec_asks_for(name):
    spec = PRESETS[name]
    mixture = generated_mixture(spec)
    assert mixture.means.shape == (spec.modes, spec.dim) and mixture.num_classes == spec.classes
    assert ((mixture.stds >= spec.std_min - 1e-12) & (mixture.stds <= spec.std_max + 1e-12)).all()
    weights = mixture.marginal_weights
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert math.isclose(float(weights.max() / weights.min()), spec.weight_ratio, rel_tol=1e-9)
    # rows are distributions; every mode is some class's favourite at weight >= `own` x its share
    torch.testing.assert_close(mixture.class_weights.sum(1), torch.ones(spec.classes, dtype=torch.float64))
    own = mixture.class_weights.max(0).values
    assert (own >= spec.own * weights).all()
    # means are separated by `separation` x (s_i + s_j)
    distance = torch.cdist(mixture.means, mixture.means)
    needed = spec.separation * (mixture.stds[:, None] + mixture.stds[None])
    off_diagonal = ~torch.eye(spec.modes, dtype=torch.bool)
    assert (distance[off_diagonal] >= needed[off_diagonal] - 1e-9).all()


def test_the_null_condition_samples_the_spec_weights():
    mixture = generated_mixture(PRESETS["gmm-d3"])
    null = torch.full((40_000,), mixture.num_classes)
    x = mixture.sample(null, torch.Generator().manual_seed(0))
    torch.testing.assert_close(mode_masses(x, mixture), mixture.marginal_weights, atol=0.01, rtol=0)


def test_spec_names_round_trip_and_bad_specs_say_what_is_wrong():
    spec = MixtureSpec(dim=4, modes=7, classes=2, seed=3, std_max=0.25)
    assert parse_spec(spec_name(spec)) == spec
    assert parse_spec("gmm:") == MixtureSpec()
    with pytest.raises(ValueError, match="fields"):
        parse_spec("gmm:dims=3")
    with pytest.raises(ValueError, match="classes"):
        parse_spec("gmm:modes=2,classes=3")
    with pytest.raises(ValueError, match="raise radius"):
        generated_mixture(MixtureSpec(dim=1, modes=6, radius=0.2))


def test_generated_teachers_are_registered_by_preset_and_by_spec():
    preset = build_adapter(load_config(None, ["model.name=gmm-d8"]))
    assert preset.name == "gmm-d8" and preset.latent_shape == (8,)
    assert torch.equal(preset.mixture.means, generated_mixture(PRESETS["gmm-d8"]).means)
    spec = "gmm:dim=3,modes=4,classes=2,seed=5"
    adapter = build_adapter(load_config(None, [f"model.name={spec}"]))
    assert adapter.mixture.dim == 3 and adapter.mixture.means.shape[0] == 4
    assert adapter_class(spec).family == "gmm"
    prompts = default_prompts(load_config(None, [f"model.name={spec}"]).model)
    assert {p for p in prompts if p} == {"class 0", "class 1"}
    labels = adapter.encode_prompts(["class 1", "", "mode 0"]).tensors["label"]
    assert labels.tolist() == [1, 2, 0]
    with pytest.raises(ConfigError, match="class N"):
        adapter.encode_prompts(["class 2"])
    with pytest.raises(ConfigError, match="model.name"):
        build_adapter(load_config(None, ["model.name=gmm:dim=0"]))


def test_mode_masses_read_wide_modes_by_responsibility_not_nearest_mean():
    """A narrow mode beside a wide one: the nearest mean hands the wide mode's inner tail to the
    narrow mode and misreads exact samples; the responsibility reads their true weights."""
    mixture = GaussianMixture(
        means=torch.tensor([[0.0], [1.5]], dtype=torch.float64),
        stds=torch.tensor([0.1, 1.0], dtype=torch.float64),
        class_weights=torch.tensor([[0.5, 0.5]], dtype=torch.float64),
        class_prior=torch.tensor([1.0], dtype=torch.float64),
    )
    x = mixture.sample(torch.ones(40_000, dtype=torch.long), torch.Generator().manual_seed(1))
    truth = torch.tensor([0.5, 0.5], dtype=torch.float64)
    nearest = torch.bincount(mixture.nearest_component(x), minlength=2).double() / x.shape[0]
    assert (nearest - truth).abs().max() > 0.1  # the old reading is off by more than 20% relative
    torch.testing.assert_close(mode_masses(x, mixture), truth, atol=0.01, rtol=0)
