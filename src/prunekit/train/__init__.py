"""Training: the Trainer, optimizers, learning-rate schedules, checkpoints."""
