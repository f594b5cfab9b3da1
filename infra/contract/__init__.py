"""The API contract: a subset of OpenAI's published OpenAPI spec, and Prism to serve it."""
