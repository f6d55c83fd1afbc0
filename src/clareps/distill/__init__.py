"""CaDistill: students, losses, baselines and the distillation trainer."""
