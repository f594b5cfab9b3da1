"""batch-canceller: cancels OpenAI Batch API jobs from SQS, EventBridge and schedules."""

__version__ = "0.1.0"
