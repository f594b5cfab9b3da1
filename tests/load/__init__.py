"""`make load`: 20,000 cancels by concurrent invocations against a rate-limited API."""
