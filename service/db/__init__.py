"""Persistence: ORM models, engines and units of work, migrations."""
