"""hpcbridge: notebooks and Dask workers as batch jobs at supercomputer centers.

Importing this package does nothing but define names: no handlers are registered,
no files written, no connections opened.
"""

__version__ = "0.1.0"
