"""The Docker files, checked without a Docker engine: every command a service runs is a
real ``tunegate`` command with real options, every ``TUNEGATE_*`` variable is a real
setting with a valid value, and the Dockerfile pins torch before installing tunegate."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from service.cli.main import app
from service.settings import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE_FILES = ["compose.yaml", "compose.gpu.yaml"]


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / name).read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the variable unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", lambda m: m.group(1), value)


def tunegate_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc or "tunegate" in str(svc.get("image", "")) or "extends" in svc
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def cli() -> Any:
    """The click group typer builds from the app (typer vendors its own click)."""
    return typer.main.get_command(app)


def test_registered_cli_has_the_server_commands() -> None:
    assert {"serve", "migrate", "worker"} <= set(cli().commands)


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_every_service_command_is_a_real_tunegate_command(compose_file: str) -> None:
    services = tunegate_services(load(compose_file))
    commands = cli().commands
    checked = 0
    for name, service in services.items():
        command = service.get("command")
        if command is None:
            continue  # inherits the base service's command
        args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        assert args[0] == "tunegate", f"{name}: {args}"
        assert args[1] in commands, f"{name}: 'tunegate {args[1]}' is not a registered command"
        # parse the options the way the real CLI would (unknown options raise)
        commands[args[1]].make_context(f"tunegate {args[1]}", args[2:])
        checked += 1
    if compose_file == "compose.yaml":
        assert checked == len(services) == 3  # migrate, api, worker


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_every_tunegate_variable_is_a_valid_setting(
    compose_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = load(compose_file)
    anchors = [v for k, v in compose.items() if k.startswith("x-") and isinstance(v, dict)]
    sources = [*tunegate_services(compose).values(), *anchors]
    fields = set(Settings.model_fields)
    seen = 0
    for source in sources:
        env = environment(source) if "environment" in source else {}
        if not env and any(isinstance(v, str) for v in source.values()):
            env = {k: interpolate(str(v)) for k, v in source.items()}  # the env anchor itself
        variables = {k: v for k, v in env.items() if k.startswith("TUNEGATE_")}
        for key in variables:
            assert key.removeprefix("TUNEGATE_").lower() in fields, f"{key} is not a Settings field"
        for key in [k for k in os.environ if k.startswith("TUNEGATE_")]:
            monkeypatch.delenv(key)
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        Settings()  # the values validate
        seen += len(variables)
    assert seen > 0


def test_compose_runs_the_stack_with_health_checks_and_scalable_workers() -> None:
    compose = load("compose.yaml")
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])

    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 1
    assert "container_name" not in worker  # would block --scale
    assert "ports" not in worker
    for name in ("api", "worker"):
        env = environment(services[name])
        assert env["TUNEGATE_QUEUE"] == "celery"
        assert env["TUNEGATE_BROKER_URL"].startswith("redis://redis:")
        assert env["TUNEGATE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        mounts = {interpolate(m).split(":")[1] for m in services[name]["volumes"]}
        assert {"/data", "/models", "/checkpoints"} <= mounts
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dockerfile_pins_torch_before_the_package_runs_as_non_root_and_offline() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text).splitlines()
    runs = [line for line in logical if line.startswith("RUN ")]
    torch_at = next(i for i, r in enumerate(runs) if re.search(r"pip install .*torch==", r))
    package_at = next(i for i, r in enumerate(runs) if re.search(r"pip install (-e )?\.(\s|$)", r))
    assert torch_at < package_at
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "HF_HUB_OFFLINE=1" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user
    assert user[-1] not in ("root", "0")
