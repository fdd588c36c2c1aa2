"""The built wheel carries the migrations: installed alone in a fresh virtualenv, outside the
repository, it migrates a database by itself."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from crm_schema import migrations
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, expect: int = 0) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == expect, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        out,
        REPO,
        cwd=out,
    )
    return next(out.glob("crm_schema-*.whl"))


def test_wheel_ships_migrations_and_types(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "crm_schema/py.typed" in names
    assert "crm_schema/_migrations/env.py" in names
    for script in migrations.revisions_in_order():
        assert f"crm_schema/_migrations/versions/{script.revision}.py" in names


def test_installed_wheel_migrates_from_outside_the_repo(
    wheel: Path, empty_db_url: URL, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / "bin"
    _run(
        bindir / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        wheel,
        cwd=tmp_path,
    )
    url = empty_db_url.render_as_string(hide_password=False)
    # Exit 0: a fresh database has no admin user yet, and the admin check says SKIP.
    output = _run(bindir / "crm-schema", "upgrade", "--url", url, cwd=tmp_path)
    head = migrations.revisions_in_order()[-1].revision
    assert head in output
    assert _run(bindir / "crm-schema", "current", "--url", url, cwd=tmp_path).strip() == head
    # The Python API from the same installation, and proof it is not the checkout's copy.
    location = _run(
        bindir / "python",
        "-c",
        "from crm_schema import migrations; print(migrations.script_location())",
        cwd=tmp_path,
    )
    assert "site-packages" in location


def test_the_extras_stay_optional(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp_path)
    # Without the jwt extra the sessions import, and asking for a token says what to install.
    script = (
        "import crm_schema.models, crm_schema.session as s\n"
        "try:\n"
        "    s.session_from_jwt(None, 'x.y.z', secret='k')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install 'crm-schema[jwt]'" in _run(python, "-c", script, cwd=tmp_path)
