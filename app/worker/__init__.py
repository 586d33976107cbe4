"""The training worker: its own OS process that claims runs and trains them.

``python -m app.worker`` (or ``pandamode worker --db URL``) runs one; ``serve`` starts N of them
through ``app.worker.supervisor.Supervisor``.
"""
