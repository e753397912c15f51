"""Tiny versions of the real teacher architectures, built offline for CPU tests.

`common` builds the text encoders and tokenizers every family shares (CLIP, T5); each family
module (`flux`, `sd3`, `sana`) saves a complete diffusers pipeline folder from the real
architecture classes with tiny configs, so tests go through the same loading code as real runs.
"""
