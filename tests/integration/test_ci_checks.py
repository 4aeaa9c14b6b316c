"""What CI checks besides the tests' own assertions.

`make lint`'s migrations check, run for real and through the Makefile's rule (in a
copy of the Makefile with stand-ins for the virtualenv's tools, which log how they
were called), and the test run's own habits: a random order, warnings as errors.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import newcomer_environment, threshold_command

# Its checkouts and commands run on SQLite files of their own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

REPO = Path(__file__).resolve().parents[2]
CHECK = ["makemigrations", "--check", "--dry-run"]
# A database server nobody runs: the migrations check must not need one.
NO_SERVER = "postgres://nobody@/nothing?host=/nonexistent"


# --- The check, for real --------------------------------------------------------------------------


def test_the_migrations_match_the_models(tmp_path: Path):
    done = subprocess.run(
        [*threshold_command(), *CHECK],
        cwd=REPO,
        env=newcomer_environment(
            THRESHOLD_VAR_DIR=str(tmp_path),
            DATABASE_URL=f"sqlite:///{tmp_path / 'threshold.sqlite3'}",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes detected" in done.stdout


SCRATCH_MODEL = """
from django.db import models


class Widget(models.Model):
    name = models.CharField(max_length=10)
"""


def test_the_check_fails_for_a_model_without_its_migration(tmp_path: Path):
    # An app with a model and an empty migrations package, added to Threshold's settings.
    app = tmp_path / "scratchapp"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text(SCRATCH_MODEL)
    (tmp_path / "scratch_settings.py").write_text(
        "from threshold.settings import *  # noqa: F403\n"
        'INSTALLED_APPS = [*INSTALLED_APPS, "scratchapp"]  # noqa: F405\n'
    )
    var_dir = tmp_path / "var"
    done = subprocess.run(
        [*threshold_command(), *CHECK],
        cwd=REPO,
        env=newcomer_environment(
            THRESHOLD_VAR_DIR=str(var_dir),
            DATABASE_URL=f"sqlite:///{var_dir / 'threshold.sqlite3'}",
            DJANGO_SETTINGS_MODULE="scratch_settings",
            PYTHONPATH=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Migrations for 'scratchapp'" in done.stdout
    assert not (app / "migrations" / "0001_initial.py").exists()


# --- The Makefile's rule --------------------------------------------------------------------------

# Each stand-in logs its name, its arguments and the database it was given, one line per call.
STAND_IN = """#!/bin/sh
echo "$(basename "$0") $* | DATABASE_URL=$DATABASE_URL | THRESHOLD_VAR_DIR=$THRESHOLD_VAR_DIR" \
    >> "$STAND_IN_LOG"
if [ "$(basename "$0")" = threshold ] && [ -n "$MIGRATION_MISSING" ]; then
    echo "Migrations for 'passkeys':"
    exit 1
fi
if [ "$(basename "$0")" = lint-imports ] && [ -n "$CONTRACT_BROKEN" ]; then
    echo "Contracts: 9 kept, 1 broken."
    exit 1
fi
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile and its install rule's inputs, with stand-ins for the virtualenv's tools."""
    # (Threshold Verify's pyproject.toml and scripts/system-deps joined them with issue 12.)
    for name in (
        "Makefile",
        "pyproject.toml",
        "constraints.txt",
        "verify/pyproject.toml",
        "scripts/system-deps",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "lint-imports", "ruff", "mypy", "threshold"):
        (bin_dir / tool).write_text(STAND_IN)
        (bin_dir / tool).chmod(0o755)
    return tmp_path


def make_lint(checkout: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = checkout / "calls.log"
    done = subprocess.run(
        ["make", "lint"],
        cwd=checkout,
        env=newcomer_environment(STAND_IN_LOG=str(log), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, log.read_text().splitlines()


def test_make_lint_checks_migrations_on_a_throwaway_database(checkout: Path, tmp_path: Path):
    own_var = tmp_path / "own-var"
    done, calls = make_lint(checkout, DATABASE_URL=NO_SERVER, THRESHOLD_VAR_DIR=str(own_var))
    assert done.returncode == 0, done.stdout + done.stderr
    tools = [call.split(" |")[0] for call in calls]
    assert tools[-3:] == [
        # Threshold Verify (verify/) is linted and type-checked with the server (issue 12).
        "ruff check threshold tests bench verify",
        "mypy threshold verify/threshold_verify",
        "threshold makemigrations --check --dry-run",
    ]
    _, database, var = calls[-1].split(" | ")
    scratch = Path(var.removeprefix("THRESHOLD_VAR_DIR="))
    # Neither the developer's database (or server) nor their var/ directory.
    assert database == f"DATABASE_URL=sqlite:///{scratch}/threshold.sqlite3"
    assert scratch != own_var
    assert scratch.parent != checkout
    assert not scratch.exists()  # removed afterwards
    assert ".venv/bin/threshold makemigrations --check --dry-run" in done.stdout


def test_make_lint_fails_when_a_model_change_has_no_migration(checkout: Path):
    done, calls = make_lint(checkout, MIGRATION_MISSING="1")
    assert done.returncode != 0
    assert "Migrations for 'passkeys':" in done.stdout
    assert calls[-1].startswith("threshold makemigrations --check --dry-run |")


def test_make_lint_checks_the_import_contracts_first(checkout: Path):
    done, calls = make_lint(checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    tools = [call.split(" |")[0] for call in calls]
    assert tools[-4] == "lint-imports --no-cache"


def test_make_lint_fails_when_an_import_contract_is_broken(checkout: Path):
    done, calls = make_lint(checkout, CONTRACT_BROKEN="1")
    assert done.returncode != 0
    assert "Contracts: 9 kept, 1 broken." in done.stdout
    assert calls[-1].startswith("lint-imports --no-cache |")


# --- The test run's habits ------------------------------------------------------------------------


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on tmp_path's test_scratch.py, with pyproject.toml's [tool.pytest.ini_options]."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args),
            *("-c", str(REPO / "pyproject.toml"), str(tmp_path / "test_scratch.py")),
        ],
        cwd=REPO,
        env=newcomer_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


TWENTY_TESTS = """
import pytest


@pytest.mark.parametrize("n", range(20))
def test_number(n):
    pass
"""


def test_the_tests_run_in_a_random_order_under_the_seed_printed(tmp_path: Path):
    (tmp_path / "test_scratch.py").write_text(TWENTY_TESTS)
    orders = []
    for seed in (1, 2):
        done = run_pytest(tmp_path, "-v", f"--randomly-seed={seed}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Using --randomly-seed={seed}" in done.stdout.splitlines()
        orders.append(re.findall(r"test_number\[(\d+)\] PASSED", done.stdout))
    in_file_order = [str(n) for n in range(20)]
    assert sorted(orders[0], key=int) == sorted(orders[1], key=int) == in_file_order
    assert in_file_order != orders[0] != orders[1] != in_file_order


WARNS = """
import warnings


def test_calls_something_deprecated():
    warnings.warn("this call is deprecated", DeprecationWarning, stacklevel=1)
"""


def test_a_warning_fails_the_test_that_raised_it(tmp_path: Path):
    (tmp_path / "test_scratch.py").write_text(WARNS)
    done = run_pytest(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DeprecationWarning: this call is deprecated" in done.stdout
    assert "1 failed" in done.stdout


WHERE_EACH_PROCESS_WRITES = """
import os

import pytest
from django.conf import settings


@pytest.mark.parametrize("n", range(4))
def test_where(n):
    var_dir = os.environ["THRESHOLD_VAR_DIR"]
    # pytest-django adds the process's name to it when it creates the test database.
    database = settings.DATABASES["default"]["TEST"]["NAME"]
    print("WHERE", os.environ["PYTEST_XDIST_WORKER"], var_dir, database, settings.STATIC_ROOT)
"""


def test_each_test_process_has_its_own_var_directory_and_database(tmp_path: Path):
    # `make test` runs pytest in two processes (pytest-xdist): each collects static files, writes
    # mail and keeps its SQLite test database in a var/ of its own, removed when it ends.
    (tmp_path / "test_scratch.py").write_text(WHERE_EACH_PROCESS_WRITES)
    done = run_pytest(tmp_path, "-n", "2", "--dist", "load", "-rA")
    assert done.returncode == 0, done.stdout + done.stderr
    places = {
        tuple(line.split()[1:]) for line in done.stdout.splitlines() if line.startswith("WHERE ")
    }
    assert {worker for worker, *_ in places} == {"gw0", "gw1"}, done.stdout
    assert len(places) == 2, places
    var_dirs = {Path(var_dir) for _, var_dir, _, _ in places}
    assert len(var_dirs) == 2
    for worker, var_dir, database, static_root in places:
        assert Path(database).parent == Path(var_dir), (worker, database)
        assert Path(static_root).parent == Path(var_dir)
        assert not Path(var_dir).exists()  # removed when the process ended


# --- The linters' settings ------------------------------------------------------------------------


def ruff(path: str, source: str) -> set[str]:
    """The rules ruff finds, with pyproject.toml's settings, in ``source`` as if at ``path``."""
    tool = Path(sys.executable).parent / "ruff"
    done = subprocess.run(
        [
            str(tool),
            "check",
            "--output-format=concise",
            "--no-cache",
            f"--stdin-filename={path}",
            "-",
        ],
        cwd=REPO,
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return set(re.findall(r"^\S+:\d+:\d+: ([A-Z]+\d+)", done.stdout, re.M))


LATE_IMPORT = "def f() -> str:\n    import json\n\n    return json.dumps(1)\n"


@pytest.mark.parametrize(
    ("path", "source", "rule"),
    [
        # No noqa for a rule that is not enabled (or that did not fire).
        ("threshold/accounts/scratch.py", "X = 1  # noqa: ANN001\n", "RUF100"),
        ("threshold/accounts/scratch.py", "X = 1  # noqa: S101\n", "RUF100"),
        ("threshold/accounts/scratch.py", "def f(n: int) -> bool:\n    return n > 37\n", "PLR2004"),
        (
            "threshold/accounts/scratch.py",
            "def f() -> None:\n    try:\n        pass\n    except Exception:\n        pass\n",
            "BLE001",
        ),
        ("threshold/accounts/scratch.py", LATE_IMPORT, "PLC0415"),
        ("tests/unit/test_scratch.py", "def test_f():\n    assert 1 and 2\n", "PT018"),
    ],
)
def test_ruff_finds(path: str, source: str, rule: str):
    assert rule in ruff(path, source)


@pytest.mark.parametrize(
    ("path", "source"),
    [
        # Expected values are a test's point; an AppConfig.ready() and the CLI import late.
        ("tests/unit/test_scratch.py", "def test_f(n):\n    assert n == 37\n"),
        ("threshold/accounts/apps.py", LATE_IMPORT),
        ("threshold/cli/scratch.py", LATE_IMPORT),
    ],
)
def test_ruff_lets_a_kind_of_file_do_what_it_must(path: str, source: str):
    assert ruff(path, source) == set()


def test_mypy_is_strict(tmp_path: Path):
    (tmp_path / "scratch.py").write_text("def f(x):\n    return x\n")
    done = subprocess.run(
        [
            *(str(Path(sys.executable).parent / "mypy"), "--config-file", "pyproject.toml"),
            *("--no-incremental", str(tmp_path / "scratch.py")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[no-untyped-def]" in done.stdout
