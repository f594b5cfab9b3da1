"""Who runs the CLI, as the `requested_by` of what it sends: `--requested-by`, else the AWS
caller identity on a deployed stack (an ARN names the role session: the audit trail's name),
else `$USER@$HOSTNAME` (the local stack, or when STS does not answer). An empty (or blank)
`--requested-by` is not given, for `send` and `sweep` alike: a record always names someone."""

from __future__ import annotations

import getpass
import os
import socket

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.cli.target import Target

# GetCallerIdentity needs no permission; a short bound, as it only names the sender.
_STS_CONFIG = Config(retries={"total_max_attempts": 2}, connect_timeout=3, read_timeout=5)


def requester(target: Target, given: str | None) -> str:
    if given is not None and given.strip():
        return given
    if target.state_file is not None or target.aws_endpoint is not None:
        return user_at_host()
    try:
        return str(target.client("sts", config=_STS_CONFIG).get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError, KeyError):
        return user_at_host()


def user_at_host() -> str:
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
    host = os.environ.get("HOSTNAME") or socket.gethostname() or "localhost"
    return f"{user}@{host}"
