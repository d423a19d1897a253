"""The training system shared by every paper: mesh, sharding, state, step, loop, checkpoints."""
