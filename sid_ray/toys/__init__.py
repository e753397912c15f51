"""The toy worlds: teachers whose answers are known, for tests, the demo and the method's checks.

- the exact Gaussian-mixture teachers ("gmm-ring": `gaussian_mixture`, its adapter, the MLP copies
  of F and G and their fit to the exact velocity; a seeded family of generated class-conditional
  mixtures of any dimension, "gmm-d2" .. "gmm-d8" or "gmm:<spec>": `mixture_family`),
- the digits teacher ("digits-flux": a tiny real FLUX pipeline trained here on sklearn's digits,
  its data, its image-text shards and its adapter).

`sid_ray.models` holds the families users distill (FLUX, SD3, SANA); the toys build on it and on
`sid_ray.sid`, never on `sid_ray.train` (tests/sid/test_import_isolation.py holds the order).
"""
