"""clareps: canonical latent representations of class-conditional diffusion models."""

__version__ = "0.1.0"
