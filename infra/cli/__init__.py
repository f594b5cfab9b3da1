"""`batch-canceller`: the operator CLI (send cancels, read records, manage schedules, sweep).

Errors carry their exit code: 2 for usage or configuration mistakes, 1 when an operation
against AWS or the function failed. `main` turns them into a message on stderr.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    exit_code = EXIT_FAILED


class UsageError(CliError):
    """Bad arguments, bad input files, or a stack that cannot be found: fix the call and rerun."""

    exit_code = EXIT_USAGE


class OperationFailed(CliError):
    """AWS or the function refused or failed; rerunning may help once the cause is fixed."""

    exit_code = EXIT_FAILED
