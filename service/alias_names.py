"""Alias names that mean something to tunegate itself.

No database code here: the CLI client and the response schemas it shares with the API
import this without pulling in SQLAlchemy (``tests/cli/test_cli_imports.py``).
"""

from __future__ import annotations

PRODUCTION = "production"
"""The alias weekly retrains compare with, and ``tunegate promote`` moves by default."""
