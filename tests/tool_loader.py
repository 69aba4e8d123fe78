"""The one way tests reach the repository's scripts (`tools/*.py`, `scripts/*.py`, `datasets/*.py`), which are not
part of the installed package: import one as a module, or run it as `python SCRIPT` would (`__main__`)."""

from __future__ import annotations

import importlib.util
import os
import runpy
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_pythonpath() -> str:
    """`PYTHONPATH` for a subprocess that runs a script: the repository first, then the caller's own entries (packages
    reached through `PYTHONPATH`, as on a machine whose Python has the project's dependencies beside it, stay
    importable)."""
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(REPO_ROOT), inherited] if inherited else [str(REPO_ROOT)])


def script_path(relative: str) -> Path:
    """`REPO_ROOT / relative` (e.g. "tools/demo.py"); raises FileNotFoundError naming the path when it is missing."""
    path = REPO_ROOT / relative
    if not path.is_file():
        raise FileNotFoundError(f"no script {relative} in the repository ({path})")
    return path


def load_script(relative: str) -> ModuleType:
    """The script at `relative` (repository-relative path) imported as a fresh module named after its file."""
    path = script_path(relative)
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name: str) -> ModuleType:
    """`tools/<name>.py` imported as a module (its `main`/`cli` callable with an argv list)."""
    return load_script(f"tools/{name}.py")


def run_tool_as_main(name: str) -> None:
    """Run `tools/<name>.py` with `__name__ == "__main__"` in this process, as `python tools/<name>.py` does
    (arguments from `sys.argv`)."""
    runpy.run_path(str(script_path(f"tools/{name}.py")), run_name="__main__")
