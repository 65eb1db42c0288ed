"""JupyterHub integration: notebooks as batch jobs.

``c.JupyterHub.spawner_class = "hpcbridge"`` selects :class:`HpcSpawner`; call
:func:`hpcbridge.spawner.hubconfig.configure` from ``jupyterhub_config.py`` to install the
safe port-callback route and the batch-hub defaults. Importing this package registers
nothing and imports nothing heavy: the job's launcher (``hpcbridge.spawner.launch``) runs
on compute nodes, where JupyterHub's hub-side modules would only cost start-up time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HpcSpawner"]


def __getattr__(name: str) -> Any:
    if name == "HpcSpawner":
        from hpcbridge.spawner.spawner import HpcSpawner

        return HpcSpawner
    raise AttributeError(name)
