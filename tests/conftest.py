"""Test-suite wide settings: offline, deterministic, and a path to the official reference data."""

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO_ROOT = Path(__file__).resolve().parents[1]


def refdata_dir() -> Path | None:
    """`$OPENSEED_REFDATA`, else `../shared/refdata` beside the clone; None when absent (a user's machine)."""
    env = os.environ.get("OPENSEED_REFDATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "refdata")
    for path in candidates:
        if (path / "README.md").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def refdata() -> Path:
    """Directory of the official reference data; skips the test where it is absent."""
    path = refdata_dir()
    if path is None:
        pytest.skip("official reference data not found: set OPENSEED_REFDATA or place ../shared/refdata beside the clone")
    return path


_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise RuntimeError(f"test tried to open a network connection to {address!r}; tests must run offline")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any non-loopback connection fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
