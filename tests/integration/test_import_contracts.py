"""The import contracts in pyproject.toml are live: each one fails on the import it forbids.

Each test copies the package's Python files to a temporary directory, adds one import, and runs
`lint-imports` on the copy with the project's own configuration: the contract that forbids the
import is broken, the others are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

# It reads the code only, no database: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

REPO = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}


def lint_imports(root: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run lint-imports on the ``threshold`` package under ``root``: its output, and each
    contract's verdict (KEPT or BROKEN) by id."""
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")
    }
    # Wide enough that no contract's name wraps onto two lines.
    env.update(PYTHONPATH=str(root), COLUMNS="400", NO_COLOR="1")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "pyproject.toml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    verdicts = {}
    for contract_id, contract in CONTRACTS.items():
        found = re.search(rf"^{re.escape(contract['name'])} (KEPT|BROKEN)$", done.stdout, re.M)
        assert found, f"no verdict for {contract_id}:\n{done.stdout}{done.stderr}"
        verdicts[contract_id] = found.group(1)
    return done, verdicts


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package's Python files (not its templates or static files) under tmp_path."""
    shutil.copytree(
        REPO / "threshold",
        tmp_path / "threshold",
        ignore=shutil.ignore_patterns("__pycache__", "templates", "static"),
    )
    return tmp_path


def add_line(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = root / module.replace(".", "/") / "__init__.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")


def test_the_package_keeps_every_contract(copy: Path):
    done, verdicts = lint_imports(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(verdicts.values()) == {"KEPT"}


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The core is plain Python: no Django, nothing of Threshold outside it.
        ("threshold.core.names", "import django.db", {"core-is-plain-python"}),
        ("threshold.core.policy", "from django.conf import settings", {"core-is-plain-python"}),
        ("threshold.core.errors", "import threshold.config", {"core-is-plain-python"}),
        (
            "threshold.core.catalog",
            "from threshold.audit.models import AuditEvent",
            {"core-is-plain-python", "layers"},
        ),
        # Upward, a layer above the next, and between independent siblings.
        ("threshold.audit.actions", "import threshold.accounts.models", {"layers"}),
        ("threshold.accounts.methods", "from threshold.policy import access", {"layers"}),
        ("threshold.web.http", "import threshold.sessions.stepup", {"layers"}),
        ("threshold.sessions.actions", "import threshold.passkeys.models", {"layers"}),
        ("threshold.passkeys.actions", "import threshold.fallback.models", {"layers"}),
        ("threshold.fallback.actions", "import threshold.passkeys.access", {"layers"}),
        ("threshold.passkeys.methods", "import threshold.enrollment.models", {"layers"}),
        ("threshold.selfservice.views", "import threshold.help.guides", {"layers"}),
        ("threshold.conformance.views", "import threshold.selfservice.apps", {"layers"}),
        ("threshold.enrollment.actions", "import threshold.cli.main", {"layers"}),
        # A module no layer names: a new app has to be given its place.
        ("threshold.oidc", "import threshold.core.errors", {"layers"}),
        # Downward but into another app's views.
        (
            "threshold.enrollment.views",
            "from threshold.passkeys.views import sign_in_options",
            {"passkeys-views"},
        ),
        ("threshold.selfservice.views", "import threshold.sessions.views", {"sessions-views"}),
        ("threshold.sessions.actions", "import threshold.web.views", {"web-views"}),
        ("threshold.cli.main", "import threshold.fallback.views", {"fallback-views"}),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy: Path, module: str, line: str, broken: set[str]
):
    add_line(copy, module, line)
    done, verdicts = lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert {contract for contract, verdict in verdicts.items() if verdict == "BROKEN"} == broken


def test_every_apps_views_have_a_contract():
    apps_with_views = {path.parent.name for path in (REPO / "threshold").glob("*/views.py")}
    protected = {
        module
        for contract in CONTRACTS.values()
        if contract["type"] == "protected"
        for module in contract["protected_modules"]
    }
    assert protected == {f"threshold.{app}.views" for app in apps_with_views}
    for app in apps_with_views:
        contract = CONTRACTS[f"{app}-views"]
        assert contract["allowed_importers"] == [f"threshold.{app}", "threshold.urls"]
