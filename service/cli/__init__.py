"""The ``tunegate`` command: server commands (serve, worker) and HTTP client commands."""
