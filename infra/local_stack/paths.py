"""Where the local stack keeps its files (state.json, env.sh, function.log): `.local-stack/`
under the current directory, or `$LOCAL_STACK_DIR` (tests use a temporary one, so a run
leaves the checkout clean). `make local` exports the directory it used, so the CLI in
another shell finds the same state file.

A directory whose state.json is a running stack's (its `owner` pid is alive) is not taken
over: a second stack keeps its files in a subdirectory named after its AWS port (`4600/`, or
`pid-N/` when the port is picked), and says so. A stack removes a state file on stop only if
it is its own (its `owner` token).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

STATE_DIR_VARIABLE = "LOCAL_STACK_DIR"
DEFAULT_STATE_DIR = ".local-stack"
OWNER_KEY = "owner"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_VARIABLE, "").strip() or DEFAULT_STATE_DIR)


def state_file(directory: Path | None = None) -> Path:
    return (directory or state_dir()) / "state.json"


def env_file(directory: Path | None = None) -> Path:
    return (directory or state_dir()) / "env.sh"


def log_file(directory: Path | None = None) -> Path:
    return (directory or state_dir()) / "function.log"


def new_owner() -> dict[str, object]:
    """This process as the owner of the state it writes: its pid, and a token no other
    stack's state carries (a pid may be reused)."""
    return {"pid": os.getpid(), "token": uuid.uuid4().hex}


def _owner(path: Path) -> dict[str, object] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    owner = document.get(OWNER_KEY) if isinstance(document, dict) else None
    return owner if isinstance(owner, dict) else None


def live_owner(path: Path) -> int | None:
    """The pid of the running stack whose state `path` holds; None if there is no such file,
    it names no owner (an older version's), or its owner is gone (a killed stack's)."""
    owner = _owner(path)
    pid = owner.get("pid") if owner else None
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, another user's
    return pid


def owned_by(path: Path, owner: dict[str, object]) -> bool:
    found = _owner(path)
    return found is not None and found.get("token") == owner["token"]


def choose_state_dir(aws_port: int) -> tuple[Path, int | None]:
    """The directory this stack keeps its files in, and the pid of the running stack whose
    state made it move out of `state_dir()` (None: it did not)."""
    base = state_dir()
    other = live_owner(state_file(base))
    if other is None:
        return base, None
    return base / (str(aws_port) if aws_port else f"pid-{os.getpid()}"), other
