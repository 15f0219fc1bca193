"""The engine: device and precision, optimizers/schedules/losses, the loop, checkpoints, progress output."""
