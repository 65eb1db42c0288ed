"""JupyterHub integration: notebooks as batch jobs.

``c.JupyterHub.spawner_class = "hpcbridge"`` selects :class:`HpcSpawner`; call
:func:`hpcbridge.spawner.hubconfig.configure` from ``jupyterhub_config.py`` to install the
safe port-callback route and the batch-hub defaults. Importing this package registers
nothing.
"""

from hpcbridge.spawner.spawner import HpcSpawner

__all__ = ["HpcSpawner"]
