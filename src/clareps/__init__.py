"""clareps: canonical latent representations of class-conditional diffusion models.

The Python API (``clareps.api``): the objects ``Teacher`` (load, sample, canonical), ``Canonical``,
``Bank`` (build, load, compare), ``Student`` (train, load, evaluate), ``Evaluation``, the settings model
``ClaridConfig``, and the shortcuts ``load_teacher``, ``canonical_samples``, ``canonicalize_images``,
``build_bank``, ``distill_student``, ``evaluate_student``, ``save_grid``.
"""

from clareps.version import __version__

API = ("Teacher", "Canonical", "Bank", "BankComparison", "Student", "Evaluation", "ClaridConfig", "load_teacher",
       "canonical_samples", "canonicalize_images", "build_bank", "distill_student", "evaluate_student", "save_grid")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    # imported on first use, so `clareps --help` does not pay for torch
    if name in API:
        from clareps import api

        return getattr(api, name)
    raise AttributeError(f"module 'clareps' has no attribute {name!r}")
