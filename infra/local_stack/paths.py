"""Where the local stack keeps its files (state.json, env.sh, function.log): `.local-stack/`
under the current directory, or `$LOCAL_STACK_DIR` (tests use a temporary one, so a run
leaves the checkout clean). `make local` exports the directory it used, so the CLI in
another shell finds the same state file."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_VARIABLE = "LOCAL_STACK_DIR"
DEFAULT_STATE_DIR = ".local-stack"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_VARIABLE, "").strip() or DEFAULT_STATE_DIR)


def state_file() -> Path:
    return state_dir() / "state.json"


def env_file() -> Path:
    return state_dir() / "env.sh"


def log_file() -> Path:
    return state_dir() / "function.log"
