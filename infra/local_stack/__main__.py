"""`make local`: the local stack, kept running, with its endpoints and commands to paste."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from infra.local_stack.stack import LocalStack

STATE_FILE = Path(".local-stack/state.json")


def main() -> None:
    stack = LocalStack(
        aws_port=int(os.environ.get("LOCAL_AWS_PORT", "4566")),
        openai_port=int(os.environ.get("LOCAL_OPENAI_PORT", "8089")),
    ).start()
    STATE_FILE.parent.mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps(stack.state(), indent=2))
    seeded = [stack.openai.seed(status="in_progress")["id"] for _ in range(3)]
    out = stack.outputs
    aws = f"aws --endpoint-url {stack.aws_endpoint} --region us-east-1"
    print(
        f"""
local stack running (Ctrl-C stops it); state in {STATE_FILE}
  AWS (moto)        {stack.aws_endpoint}   any credentials, e.g. AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  OpenAI emulator   {stack.openai.base_url}   control plane: {stack.openai.url}/_emulator/
  queue             {out["CancelQueueUrl"]}
  table             {out["BatchesTableName"]}
  bus               {out["EventBusName"]}
  seeded batches    {" ".join(seeded)}

try:
  {aws} sqs send-message --queue-url {out["CancelQueueUrl"]} --message-body {seeded[0]}
  {aws} dynamodb get-item --table-name {out["BatchesTableName"]} --key '{{"batch_id": {{"S": "{seeded[0]}"}}}}'
  {aws} events put-events --entries '[{{"EventBusName": "{out["EventBusName"]}", "Source": "me", "DetailType": "Batch Cancel Requested", "Detail": "{{\\"batch_id\\": \\"{seeded[1]}\\"}}"}}]'
  {aws} sqs receive-message --queue-url {out["DeadLetterQueueUrl"]} --message-attribute-names All
  curl -s -X POST {stack.openai.url}/_emulator/seed -d '{{"count": 5}}'
  .venv/bin/batch-canceller --local status {seeded[0]}
""",
        flush=True,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
