"""Studies over the stages: grids of banks (bank sweep) and of distillation settings (distill-sweep)."""
