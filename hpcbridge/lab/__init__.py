"""What hpcbridge adds to JupyterLab inside a notebook server's job.

``walltime.py`` is a Jupyter server extension that tells the browser how much walltime
this server's batch job has left, and ``labextensions/`` holds the prebuilt JupyterLab
extension that shows it in the status bar and warns before the end; ``activity.py``
makes a running cell count as use of the server (idle culling). The launcher
(``hpcbridge/spawner/launch.py``) enables both; nothing here is installed into the
node's Python, so the code that runs is the checkout's (``docs/architecture.md``).
"""
