"""clareps: canonical latent representations of class-conditional diffusion models.

The Python API (``clareps.api``; the README's "From Python"): ``load_teacher``, ``canonical_samples``,
``canonicalize_images``, ``build_bank``, ``distill_student``, ``evaluate_student``, ``save_grid``.
"""

from clareps.version import __version__

API = ("Teacher", "Canonical", "load_teacher", "canonical_samples", "canonicalize_images", "build_bank",
       "distill_student", "evaluate_student", "save_grid")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    # imported on first use, so `clareps --help` does not pay for torch
    if name in API:
        from clareps import api

        return getattr(api, name)
    raise AttributeError(f"module 'clareps' has no attribute {name!r}")
