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
