"""`train.attention_backend`: the kernels torch may use on a GPU, and the one it tries first."""

import pytest
import torch

from sid_ray.train.attention import KERNELS, kernel_priority, select_attention_backend

FLAGS = {
    "flash": torch.backends.cuda.flash_sdp_enabled,
    "efficient": torch.backends.cuda.mem_efficient_sdp_enabled,
    "math": torch.backends.cuda.math_sdp_enabled,
    "cudnn": torch.backends.cuda.cudnn_sdp_enabled,
}


@pytest.fixture
def restore_flags():
    before = {name: flag() for name, flag in FLAGS.items()}
    order = torch._C._get_sdp_priority_order()
    yield
    torch._C._set_sdp_priority_order(order)
    for name, enabled in before.items():
        getattr(torch.backends.cuda, f"enable_{'mem_efficient' if name == 'efficient' else name}_sdp")(
            enabled
        )


@pytest.mark.parametrize("backend", list(KERNELS))
def test_the_backends_kernels_are_allowed_in_its_order(backend, restore_flags):
    line = select_attention_backend(backend, torch.device("cuda"))  # sets process-wide flags only
    assert {name: flag() for name, flag in FLAGS.items()} == {
        name: name in KERNELS[backend] for name in FLAGS
    }
    assert kernel_priority() == list(KERNELS[backend])
    assert backend in line


def test_named_kernels_come_first_with_fallbacks_for_masked_calls(restore_flags):
    # flash and cuDNN take no attention mask: CLIP's causal mask must still find a kernel
    for backend in ("flash", "cudnn", "efficient"):
        select_attention_backend(backend, torch.device("cuda"))
        assert kernel_priority()[0] == backend
        assert "efficient" in kernel_priority() and "math" in kernel_priority()


def test_cudnn_is_first_only_when_asked(restore_flags):
    # torch's own order puts cuDNN last; its eager backward crashed inside a full-size FLUX.1-dev
    select_attention_backend("auto", torch.device("cuda"))
    assert not torch.backends.cuda.cudnn_sdp_enabled() and kernel_priority()[0] == "flash"
    select_attention_backend("cudnn", torch.device("cuda"))
    assert kernel_priority()[0] == "cudnn"
    select_attention_backend("auto", torch.device("cuda"))  # and back
    assert "cudnn" not in kernel_priority()


def test_cpu_is_left_to_torch_and_bad_names_are_refused(restore_flags):
    before = {name: flag() for name, flag in FLAGS.items()}
    assert "cpu" in select_attention_backend("flash", torch.device("cpu"))
    assert {name: flag() for name, flag in FLAGS.items()} == before
    with pytest.raises(ValueError, match="train.attention_backend"):
        select_attention_backend("fastest", torch.device("cpu"))


def _grad_reaching(through) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention's output (batch, heads, tokens, dim) and the gradient that reaches it on FLUX's
    single-stream path: diffusers' processor returns it as (batch, tokens, width), `through` the
    layout fix or not, and the block concatenates that with the MLP's output."""
    torch.manual_seed(0)
    # cuDNN's output follows the query's layout: (batch, tokens, heads, dim) in memory
    out = torch.randn(2, 6, 3, 4, requires_grad=True).sin().transpose(1, 2)
    seen = []
    out.register_hook(lambda g: seen.append(g))
    y = through(out.permute(0, 2, 1, 3).flatten(2, 3))
    block = torch.cat([y, torch.zeros(*y.shape[:2], 4 * y.shape[2])], dim=2)
    block.backward(torch.randn(block.shape))
    return out, seen[0]


def test_the_gradient_reaches_attention_in_its_output_layout():
    from sid_ray.train.attention import gradient_in_output_layout

    out, plain = _grad_reaching(lambda y: y)
    _, fixed = _grad_reaching(gradient_in_output_layout)
    assert plain.stride() != out.stride()  # a column slice of the concat's gradient
    assert fixed.stride() == out.stride()
    assert torch.equal(fixed, plain)  # the same values, laid out as the output


def test_the_hooks_leave_a_transformers_outputs_and_gradients_unchanged():
    from diffusers import FluxTransformer2DModel

    from sid_ray.train.attention import keep_attention_gradients_in_output_layout

    torch.manual_seed(0)
    config = dict(num_layers=1, num_single_layers=2, attention_head_dim=8, num_attention_heads=2)
    config |= dict(joint_attention_dim=16, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4), in_channels=4)
    model = FluxTransformer2DModel(**config)
    inputs = dict(
        hidden_states=torch.randn(1, 4, 4),
        encoder_hidden_states=torch.randn(1, 3, 16),
        pooled_projections=torch.randn(1, 8),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(4, 3),
        txt_ids=torch.zeros(3, 3),
    )

    def output_and_grads():
        model.zero_grad()
        out = model(**inputs).sample
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    before, grads_before = output_and_grads()
    # three roles sharing one base: each attention module is hooked once
    assert keep_attention_gradients_in_output_layout([model, model, model]) == 3
    after, grads_after = output_and_grads()
    assert torch.equal(before, after)
    assert all(torch.equal(a, b) for a, b in zip(grads_before, grads_after, strict=True))
