"""The training loop, its services to schedulers, checkpoints, evaluation and runs on disk."""

#: The results version of this layer: bump it in the commit that changes what the loop, its
#: services, evaluation or the domains compute (any number a run records; tests/golden replays
#: short runs and fails otherwise).
RESULTS_VERSION = 1
