"""Run a subprocess in which some packages cannot be imported (as on a machine without them).

:func:`env_without` writes a ``sitecustomize.py`` that installs a meta-path finder raising ``ImportError`` for
the named top-level packages, and returns an environment whose ``PYTHONPATH`` puts it first. Every attempt is
also appended to ``attempts.txt`` beside it, so a test can tell "never imported" from "tried, caught the error
and went on".
"""

from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = '''\
import os, sys

_BLOCKED = set(os.environ["VERL_TEST_BLOCKED_MODULES"].split(","))
_LOG = os.environ["VERL_TEST_BLOCKED_LOG"]


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            with open(_LOG, "a") as f:
                f.write(name + "\\n")
            raise ImportError(f"{name} is blocked in this test (as on a machine without it)")
        return None


sys.meta_path.insert(0, _Blocker())
'''

ROOT = Path(__file__).resolve().parents[2]


def env_without(modules: list[str], directory: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for ``subprocess`` in which importing any of ``modules`` raises ImportError."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(directory), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VERL_TEST_BLOCKED_MODULES"] = ",".join(modules)
    env["VERL_TEST_BLOCKED_LOG"] = str(directory / "attempts.txt")
    return env


def attempts(directory: Path) -> list[str]:
    """The blocked imports that were attempted in processes using ``env_without(..., directory)``."""
    log = Path(directory) / "attempts.txt"
    return log.read_text().split() if log.exists() else []
