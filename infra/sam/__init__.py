"""The SAM application's tooling: a CloudFormation-aware YAML loader for template.yaml and the
SAM CLI / cfn-lint runners (in their own virtual environment, `.sam-venv`)."""
