"""The README's marked commands and `make local`'s own run verbatim with the real AWS CLI
(v1, from PyPI) and the operator CLI, after nothing but `make local`'s export block, in a new
user's shell: no `.venv/bin` on PATH and no PYTHONPATH until the export block sets them."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from infra.local_stack.banner import EXPORT_END, EXPORT_MARKER
from tests.local_stack.running import ROOT, environment, new_user_environment, running

MARKER = "<!-- run-against-local-stack"
BLOCK = re.compile(re.escape(MARKER) + r"[^\n]*-->\n```sh\n(.*?)\n```", re.DOTALL)


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def export_block(printed: str) -> str:
    start = printed.index(EXPORT_MARKER)
    return printed[start : printed.index(EXPORT_END, start) + len(EXPORT_END)]


def banner_commands(printed: str) -> list[str]:
    after = printed.split("try:\n", 1)[1]
    return [line.strip() for line in after.splitlines() if line.strip()]


def bash(exports: str, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'eval "$EXPORTS"\n{script}'],
        cwd=ROOT, env={**env, "EXPORTS": exports}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def settled(exports: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs `command`; one that reads records (`status`, exit 1 while an ID has no record yet:
    the message just sent may not be handled yet) is run again, as a person would, for 30 s."""
    result = bash(exports, command, env)
    for _ in range(30):
        if result.returncode != 1 or " status " not in command:
            break
        time.sleep(1)
        result = bash(exports, command, env)
    return result


def test_the_readme_and_banner_commands_run_verbatim_after_the_export_block(
    tmp_path: Path,
) -> None:
    blocks = readme_blocks()
    assert len(blocks) == 3, "the README's marked blocks: the local stack, sending, operate"
    # Its state, env.sh and log in a temporary directory: the checkout stays clean. The
    # commands get it from the export block alone (the shell they run in does not set it).
    stack_env = environment(LOCAL_STACK_DIR=str(tmp_path / "state"))
    env = new_user_environment(environment(), tmp_path / "user-bin")
    with running(["make", "--no-print-directory", "local"], ROOT, stack_env) as (_, printed):
        assert printed.startswith(EXPORT_MARKER), printed[:300]  # the block comes first
        exports = export_block(printed)
        assert f"export LOCAL_STACK_DIR={tmp_path / 'state'}" in exports
        assert (tmp_path / "state" / "state.json").is_file()
        for command in [*banner_commands(printed), blocks[1], blocks[2]]:
            result = settled(exports, command, env)
            assert result.returncode == 0, (command, result.stdout, result.stderr)

        # What they sent was handled: batch_abc123 reaches `cancelled` (the emulator takes 4 s).
        status = ""
        for _ in range(60):
            result = bash(exports, "batch-canceller --local status --json batch_abc123", env)
            assert result.returncode == 0, result.stderr
            status = json.loads(result.stdout)[0].get("status", "")
            if status == "cancelled":
                break
            time.sleep(1)
        assert status == "cancelled"
        # The DLQ command shows the DLQ (empty: every command above was valid).
        dlq = bash(exports, blocks[2], env)
        assert "error_reason" not in dlq.stdout
        # The local stack's own block: sweeps, status and the emulator's control route.
        result = bash(exports, blocks[0], env)
        assert result.returncode == 0, (blocks[0], result.stdout, result.stderr)
        assert '"id": "batch_abc123"' in result.stdout.replace('":"', '": "')
