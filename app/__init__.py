"""pandamode's web app: dashboard, JSON API, worker supervisor and CLI."""
