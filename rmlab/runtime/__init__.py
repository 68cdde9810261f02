"""Running one run: its directory and status, the lifecycle every stage shares, processes, checkpoints, preemption."""
