"""gtl-verify: exact checks and benchmarks for Guided Transfer Learning in discrete diffusion."""

__version__ = "0.1.0"
