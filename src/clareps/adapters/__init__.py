"""Teachers from elsewhere: one interface for our U-Net and diffusers models (UNet2DModel, DiT + VAE)."""

from clareps.adapters.base import ExternalTeacher
from clareps.diffusion.teacher import (TeacherModel, TeacherShape, from_images, pixel_shape, to_images, to_latent,
                                      to_pixels)
from clareps.adapters.loading import (is_external, load_external, load_teacher_any, teacher_fingerprint,
                                      teacher_kind)

__all__ = ["ExternalTeacher", "TeacherModel", "TeacherShape", "from_images", "pixel_shape", "to_images", "to_latent",
           "to_pixels", "is_external", "load_external", "load_teacher_any", "teacher_fingerprint", "teacher_kind"]
