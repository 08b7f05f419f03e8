"""The learning-rate schedules of siftc's training loop (siftc/experiments/train.py), in a module of
their own so the command line can offer them without importing torch."""
SCHEDULES = ("constant", "cosine")     # constant, or annealed to 0 over the run's steps (cosine)
