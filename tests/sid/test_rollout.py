"""SID.md section 3: the K-step roll-out, its noise modes, and k ~ U{1..K}."""

from collections import Counter

import pytest
import torch

from sid_ray.sid import draw_num_steps, rollout, rollout_times


def test_rollout_times():
    assert rollout_times(4) == [1.0, 0.75, 0.5, 0.25]


def test_shifted_rollout_times_are_sd3s_shift():
    # s u / (1 + (s - 1) u): s = 0.5 moves the later steps toward the data, s > 1 away from it
    assert rollout_times(4, 0.5) == pytest.approx([1.0, 0.6, 1 / 3, 1 / 7])
    assert rollout_times(2, 3.0) == pytest.approx([1.0, 0.75])
    assert rollout_times(1, 0.5) == [1.0]
    with pytest.raises(ValueError, match="must be positive"):
        rollout_times(4, 0.0)


def test_shifted_rollout_calls_the_model_at_the_shifted_times():
    model = Recorder()
    z = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = rollout(model, z, 3, 4, "fixed", time_shift=0.5)
    assert [c[1] for c in model.calls] == pytest.approx([1.0, 0.6, 1 / 3])
    with torch.no_grad():  # SID.md 3's step at those times
        x0 = torch.zeros_like(z)
        for t in rollout_times(4, 0.5)[:3]:
            x_t = (1 - t) * x0 + t * z
            x0 = x_t - t * Recorder()(x_t, torch.full((3,), t, dtype=z.dtype))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)


class Recorder(torch.nn.Module):
    """v = W x, recording whether each call builds a graph."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.calls = []

    def forward(self, x, t):
        self.calls.append((torch.is_grad_enabled(), t[0].item(), x.clone()))
        return self.weight * x + t.view(-1, 1)


def _reference(velocity, z, k, K, noise, noises):
    """Written directly from SID.md 3: noises[i] is the fresh noise of step i (i >= 1)."""
    x0_hat, x_prev, t_prev = torch.zeros_like(z), None, None
    for i in range(k):
        t = 1 - i / K
        if i == 0 or noise == "fixed":
            eps = z
        elif noise == "fresh":
            eps = noises[i]
        else:  # ddim
            eps = (x_prev - (1 - t_prev) * x0_hat) / t_prev
        x_t = (1 - t) * x0_hat + t * eps
        x0_hat = x_t - t * velocity(x_t, torch.full((z.shape[0],), t, dtype=z.dtype))
        x_prev, t_prev = x_t, t
    return x0_hat


@pytest.mark.parametrize("noise", ["fresh", "fixed", "ddim"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_rollout_matches_the_written_out_reference(noise, k):
    z = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = Recorder()
    out = rollout(model, z, k, 4, noise, generator=torch.Generator().manual_seed(5))
    # the fresh noises the roll-out drew, replayed from the same generator
    g = torch.Generator().manual_seed(5)
    noises = [None] + [torch.randn(z.shape, generator=g, dtype=z.dtype) for _ in range(k - 1)]
    with torch.no_grad():
        expected = _reference(Recorder(), z, k, 4, noise, noises)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert [c[1] for c in model.calls] == rollout_times(4)[:k]


def test_only_the_last_step_builds_a_graph():
    model = Recorder()
    z = torch.randn(3, 2, dtype=torch.float64)
    out = rollout(model, z, 3, 4, grad_last_step=True)
    assert [c[0] for c in model.calls] == [False, False, True]
    assert out.requires_grad
    out.sum().backward()
    # d out / d weight comes from the last call only: -t_last * x_{t_last}
    x_last = model.calls[-1][2]
    torch.testing.assert_close(model.weight.grad, (-0.5 * x_last).sum())


def _weight_grad(k: int, share: float, noise: str = "fixed") -> tuple[torch.Tensor, torch.Tensor]:
    model = Recorder()
    z = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = rollout(model, z, k, 4, noise, torch.Generator().manual_seed(5), True, earlier_steps_gradient=share)
    (out**2).sum().backward()
    return out.detach(), model.weight.grad


@pytest.mark.parametrize("noise", ["fresh", "ddim"])
def test_the_earlier_steps_gradient_share_scales_the_paths_through_them(noise):
    # share 1: plain autograd through the written-out roll-out of SID.md 3
    model = Recorder()
    z = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(5)
    noises = [None] + [torch.randn(z.shape, generator=g, dtype=z.dtype) for _ in range(2)]
    (_reference(model, z, 3, 4, noise, noises) ** 2).sum().backward()
    out_full, grad_full = _weight_grad(3, 1.0, noise)
    torch.testing.assert_close(grad_full, model.weight.grad, rtol=1e-12, atol=0)
    # the forward value never changes, and share 0 is the last step alone
    out_none, grad_none = _weight_grad(3, 0.0, noise)
    torch.testing.assert_close(out_full, out_none, rtol=0, atol=0)
    model = Recorder()
    out = rollout(model, z, 3, 4, noise, torch.Generator().manual_seed(5), True)
    (out**2).sum().backward()
    assert [c[0] for c in model.calls] == [False, False, True]
    torch.testing.assert_close(grad_none, model.weight.grad, rtol=0, atol=0)
    # two steps: the one path through the earlier step is scaled by the share, exactly
    _, g0 = _weight_grad(2, 0.0, noise)
    _, g1 = _weight_grad(2, 1.0, noise)
    _, g_share = _weight_grad(2, 0.1, noise)
    torch.testing.assert_close(g_share, g0 + 0.1 * (g1 - g0), rtol=1e-12, atol=1e-15)
    assert not torch.isclose(g1, g0)  # the earlier step's path does carry gradient


class Mlp(torch.nn.Module):
    """A velocity with activations worth keeping (Recorder's are only its inputs)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)
        ).double()
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        return self.net(torch.cat([x, t.view(-1, 1)], dim=1))


def _saved_and_grads(recompute: bool) -> tuple[int, int, list[torch.Tensor]]:
    """Elements autograd keeps for the backward (outside recomputed regions), forward calls, grads."""
    model = Mlp()
    z = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: kept.append(x.numel()) or x, lambda x: x):
        out = rollout(
            model,
            z,
            4,
            4,
            "fresh",
            torch.Generator().manual_seed(5),
            True,
            0.1,
            earlier_steps_recompute=recompute,
        )
    (out**2).sum().backward()
    return sum(kept), model.calls, [p.grad for p in model.parameters()]


def test_recomputing_the_earlier_steps_gives_the_same_gradient_and_keeps_less():
    kept, calls, grads = _saved_and_grads(recompute=False)
    kept_recomputed, calls_recomputed, grads_recomputed = _saved_and_grads(recompute=True)
    for plain, recomputed in zip(grads, grads_recomputed, strict=True):
        torch.testing.assert_close(recomputed, plain, rtol=0, atol=0)
    # the 3 earlier steps run again in the backward; their activations are no longer held
    assert (calls, calls_recomputed) == (4, 7)
    assert kept_recomputed < kept / 2, (kept_recomputed, kept)


def test_no_graph_at_all_without_grad_last_step():
    model = Recorder()
    out = rollout(model, torch.randn(2, 2, dtype=torch.float64), 4, 4)
    assert not out.requires_grad and not any(c[0] for c in model.calls)


def test_bad_step_counts_and_noise_modes_are_refused():
    with pytest.raises(ValueError, match="num_steps"):
        rollout(Recorder(), torch.zeros(1, 2), 5, 4)
    with pytest.raises(ValueError, match="valid"):
        rollout(Recorder(), torch.zeros(1, 2), 1, 4, noise="random")


def test_k_is_uniform_and_identical_on_every_rank():
    ks = [draw_num_steps(4, seed=7, iteration=i) for i in range(4000)]
    counts = Counter(ks)
    assert set(counts) == {1, 2, 3, 4}
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in counts.values())
    # "another rank": a fresh call with the same seed and iteration, in any order
    assert [draw_num_steps(4, 7, i) for i in reversed(range(4000))] == ks[::-1]
    assert ks != [draw_num_steps(4, 8, i) for i in range(4000)]


def test_a_k_block_holds_k_for_that_many_iterations_and_k_stays_uniform():
    ks = [draw_num_steps(4, seed=7, iteration=i, block=25) for i in range(25 * 800)]
    blocks = [ks[j : j + 25] for j in range(0, len(ks), 25)]
    assert all(len(set(b)) == 1 for b in blocks)
    per_block = [b[0] for b in blocks]
    # rounds of 4 blocks take every k once, in a seeded order that changes from round to round
    assert all(sorted(per_block[j : j + 4]) == [1, 2, 3, 4] for j in range(0, len(per_block), 4))
    assert len({tuple(per_block[j : j + 4]) for j in range(0, len(per_block), 4)}) > 10
    assert per_block != [draw_num_steps(4, seed=8, iteration=i, block=25) for i in range(0, 25 * 800, 25)]
    # block 1 is SID.md's law, k drawn afresh every iteration (the draws of old runs unchanged)
    assert [draw_num_steps(4, 7, i, block=1) for i in range(50)] == [
        draw_num_steps(4, 7, i) for i in range(50)
    ]


def test_a_bad_block_or_law_is_refused():
    with pytest.raises(ValueError, match="block"):
        draw_num_steps(4, 0, 0, block=0)
    with pytest.raises(ValueError, match="law"):
        draw_num_steps(4, 0, 0, law="first")


def test_the_config_k_block_reaches_the_draw_distill_step_makes():
    from sid_ray.config import load_config
    from sid_ray.train.sid_settings import settings_from_config

    settings = settings_from_config(load_config(None, ["sid.num_steps=4", "sid.k_block=5"]).sid)
    assert (settings.num_steps, settings.k_block, settings.k_law) == (4, 5, "uniform")
    # distill_step draws k as draw_num_steps(K, seed, iteration, block=k_block, law=k_law)
    ks = [draw_num_steps(4, 0, i, block=settings.k_block) for i in range(200)]
    assert all(len(set(ks[j : j + 5])) == 1 for j in range(0, 200, 5))
    assert len(set(ks)) > 1
    default = settings_from_config(load_config(None, ["sid.num_steps=4"]).sid)
    assert (default.k_block, default.k_law) == (1, "uniform")


def test_the_last_law_always_runs_all_k_steps():
    from sid_ray.config import load_config
    from sid_ray.train.sid_settings import settings_from_config

    settings = settings_from_config(load_config(None, ["sid.num_steps=3", "sid.k_law=last"]).sid)
    assert settings.k_law == "last"
    assert {draw_num_steps(3, 0, i, law=settings.k_law) for i in range(100)} == {3}
    assert {draw_num_steps(4, 0, i, law="last") for i in range(20)} == {4}
