"""The class-conditional diffusion teacher: schedule, U-Net, taps, DDIM, training."""
