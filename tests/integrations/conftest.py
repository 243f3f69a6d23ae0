"""The integrations run against the same real embedded server as the CLI tests."""

from tests.cli.conftest import live_server

__all__ = ["live_server"]
