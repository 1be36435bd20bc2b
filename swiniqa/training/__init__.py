"""Per-worker train loop, the Ray Train driver and checkpoints."""
