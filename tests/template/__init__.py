"""Checks of template.yaml and samconfig.toml: properties read from the template itself, and the
SAM CLI's own validation, lint and build (run from `.sam-venv`)."""
