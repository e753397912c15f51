"""`train.attention_backend`: the kernels torch may use on a GPU."""

import pytest
import torch

from sid_ray.train.attention import KERNELS, select_attention_backend

FLAGS = {
    "flash": torch.backends.cuda.flash_sdp_enabled,
    "efficient": torch.backends.cuda.mem_efficient_sdp_enabled,
    "math": torch.backends.cuda.math_sdp_enabled,
    "cudnn": torch.backends.cuda.cudnn_sdp_enabled,
}


@pytest.fixture
def restore_flags():
    before = {name: flag() for name, flag in FLAGS.items()}
    yield
    select_attention_backend("auto", torch.device("cuda"))
    for name, enabled in before.items():
        getattr(torch.backends.cuda, f"enable_{'mem_efficient' if name == 'efficient' else name}_sdp")(
            enabled
        )


@pytest.mark.parametrize("backend", list(KERNELS))
def test_only_the_backends_kernels_are_allowed_on_cuda(backend, restore_flags):
    line = select_attention_backend(backend, torch.device("cuda"))  # sets process-wide flags only
    assert {name: flag() for name, flag in FLAGS.items()} == {
        name: name in KERNELS[backend] for name in FLAGS
    }
    assert backend in line


def test_auto_leaves_out_cudnn(restore_flags):
    # cuDNN's attention backward fails inside full-size DiTs on torch 2.11 (shared/GPU.md)
    select_attention_backend("auto", torch.device("cuda"))
    assert not torch.backends.cuda.cudnn_sdp_enabled() and torch.backends.cuda.flash_sdp_enabled()


def test_cpu_is_left_to_torch_and_bad_names_are_refused(restore_flags):
    before = {name: flag() for name, flag in FLAGS.items()}
    assert "cpu" in select_attention_backend("flash", torch.device("cpu"))
    assert {name: flag() for name, flag in FLAGS.items()} == before
    with pytest.raises(ValueError, match="train.attention_backend"):
        select_attention_backend("fastest", torch.device("cpu"))
