"""curate: raw video collections -> training-ready clip datasets, on Slurm or one machine."""

__version__ = "0.1.0"
