"""The training machinery every stage shares: the loop, checkpoints, optimizers, DDP, plots."""
