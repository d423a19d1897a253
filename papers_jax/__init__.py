"""papers_jax: classic deep-learning papers reproduced on one JAX/Flax NNX training system."""

__version__ = "0.1.0"
