"""The containerized SLURM testbed of hpcbridge (see shared design: Testbed topology)."""
