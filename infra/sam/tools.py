"""Runs the SAM CLI and cfn-lint from their own virtual environment, `.sam-venv`.

aws-sam-cli pins boto3 exactly, so it cannot share the project's `.venv`. cfn-lint stays on
1.53.x: 1.54 and later no longer expand the SAM transform, so a broken `!Ref` inside a SAM
resource would pass unseen. aws-sam-cli 1.168-1.169 declare `cfn-lint<1.54,>=1.52.0`: the
release line built and tested against 1.53, so pip resolves both pins together.

Nothing here needs Docker or an AWS account: `sam validate --lint`, `cfn-lint` and `sam build`
work offline (the build downloads the function's requirements from the package index).

    python -m infra.sam.tools install | validate | lint | build [--build-dir DIR] [--template T]
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_VENV = ROOT / ".sam-venv"
DEFAULT_BUILD_DIR = ROOT / ".aws-sam" / "build"
REGION = "us-east-1"

AWS_SAM_CLI_VERSION = "1.169.0"
CFN_LINT_VERSION = "1.53.3"
REQUIREMENTS = (f"aws-sam-cli=={AWS_SAM_CLI_VERSION}", f"cfn-lint=={CFN_LINT_VERSION}")

# The function's runtime; `sam build` looks for this interpreter on PATH.
RUNTIME_PYTHON = "3.13"

INSTALL_TIMEOUT_SECONDS = 1800.0
VALIDATE_TIMEOUT_SECONDS = 600.0
BUILD_TIMEOUT_SECONDS = 1200.0


class ToolError(RuntimeError):
    """A tool exited non-zero (when the caller asked for success); carries its output."""

    def __init__(self, result: ToolResult) -> None:
        super().__init__(
            f"{' '.join(result.args)} exited {result.returncode} after "
            f"{result.seconds:.1f}s:\n{result.output}"
        )
        self.result = result


@dataclass(frozen=True)
class ToolResult:
    args: tuple[str, ...]
    returncode: int
    output: str  # stdout and stderr, interleaved as the tool wrote them
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def ensure_sam_venv(venv: Path = SAM_VENV) -> Path:
    """Creates `venv` with the pinned tools once and returns its `bin` directory.

    Idempotent and cheap after the first run: a stamp file records the installed pins, so a
    changed pin reinstalls and an unchanged one only reads a file. A lock serialises
    concurrent callers (two test sessions, a developer and a test run)."""
    stamp = venv / ".installed"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    bin_dir = venv / "bin"
    if _stamp_matches(stamp, wanted, bin_dir):
        return bin_dir
    venv.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(venv / ".lock"):
        if _stamp_matches(stamp, wanted, bin_dir):
            return bin_dir
        stamp.unlink(missing_ok=True)
        python = bin_dir / "python"
        if not python.resolve().is_file():
            # Missing, or its base interpreter is gone: start over, keeping the held lock.
            for leftover in ("bin", "lib", "lib64", "include", "pyvenv.cfg"):
                path = venv / leftover
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            _run([_base_python(), "-m", "venv", str(venv)], timeout=300.0, check=True)
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *REQUIREMENTS,
            ],
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=True,
        )
        _check_versions(bin_dir)
        stamp.write_text(wanted)
    return bin_dir


def validate(template: Path = TEMPLATE, *, check: bool = True) -> ToolResult:
    """`sam validate --lint`: the SAM transform, then cfn-lint on the expanded template."""
    bin_dir = ensure_sam_venv()
    return _run(
        [
            str(bin_dir / "sam"),
            "validate",
            "--lint",
            "--template",
            str(template),
            "--region",
            REGION,
        ],
        env=tool_env(),
        cwd=template.parent,
        timeout=VALIDATE_TIMEOUT_SECONDS,
        check=check,
    )


def lint(templates: Sequence[Path] = (TEMPLATE,), *, check: bool = True) -> ToolResult:
    """Plain `cfn-lint` on one or more templates (1.53.x expands the SAM transform itself),
    informational rules included: stricter than `sam validate --lint`, which reports errors
    and warnings only. Each finding names its file."""
    bin_dir = ensure_sam_venv()
    return _run(
        [
            str(bin_dir / "cfn-lint"),
            "--include-checks",
            "I",
            "--regions",
            REGION,
            "--",
            *(str(template) for template in templates),
        ],
        env=tool_env(),
        cwd=templates[0].parent,
        timeout=VALIDATE_TIMEOUT_SECONDS,
        check=check,
    )


def build(
    build_dir: Path = DEFAULT_BUILD_DIR,
    *,
    template: Path = TEMPLATE,
    cwd: Path | None = None,
    check: bool = True,
) -> ToolResult:
    """`sam build` into `build_dir`: one directory per function with its code and requirements.

    `cwd` is where SAM leaves its own bookkeeping (`.aws-sam/`); tests pass a temporary one."""
    bin_dir = ensure_sam_venv()
    return _run(
        [
            str(bin_dir / "sam"),
            "build",
            "--template",
            str(template),
            "--build-dir",
            str(build_dir),
        ],
        env=tool_env(pyenv_runtime=True),
        cwd=cwd or ROOT,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=check,
    )


def tool_env(*, pyenv_runtime: bool = False) -> dict[str, str]:
    """The environment the tools run in: a fixed region and fake credentials, so that nothing
    reads a developer's profile or reaches a real account, and no telemetry."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "SAM_CLI_")) and key != "VIRTUAL_ENV"
    }
    env.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            # Any accidental AWS call fails at once instead of hanging or leaving the machine.
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAM_CLI_TELEMETRY": "0",
        }
    )
    if pyenv_runtime:
        version = pyenv_version_with_runtime()
        if version is not None:
            env["PYENV_VERSION"] = version
    return env


def pyenv_version_with_runtime() -> str | None:
    """`PYENV_VERSION` that keeps the current default first and adds the runtime's Python
    (e.g. `3.11.7:3.13.0`), so pyenv's `python3.13` shim resolves for `sam build`; None
    without pyenv or without such a Python."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    try:
        bare = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [pyenv, "versions", "--bare"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
        current = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [pyenv, "version-name"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    runtimes = sorted(
        (v for v in bare if v.startswith(RUNTIME_PYTHON + ".")),
        key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")),
    )
    if not runtimes:
        return None
    chosen = [*current.split(":"), runtimes[-1]] if current else [runtimes[-1]]
    return ":".join(dict.fromkeys(v for v in chosen if v))


def runtime_python() -> str | None:
    """A Python interpreter of the function's runtime version (the build's artifact is
    imported with it), or None when the machine has none."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == RUNTIME_PYTHON:
        return _base_python()
    pyenv = shutil.which("pyenv")
    version = pyenv_version_with_runtime()
    if pyenv is not None and version is not None:
        prefix = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [pyenv, "prefix", version.split(":")[-1]],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        candidate = Path(prefix) / "bin" / f"python{RUNTIME_PYTHON}"
        if prefix and candidate.is_file():
            return str(candidate)
    return shutil.which(f"python{RUNTIME_PYTHON}")


_READ_OVERRIDES = """
import json, sys
from pathlib import Path
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig
config = SamConfig(Path(sys.argv[1]).parent, Path(sys.argv[1]).name)
raw = config.get_all(["deploy"], "parameters").get("parameter_overrides")
print(json.dumps(CfnParameterOverridesType().convert(raw, None, None)))
"""


def deploy_parameter_overrides(samconfig: Path = ROOT / "samconfig.toml") -> dict[str, str]:
    """The `parameter_overrides` of samconfig's default deploy, parsed by the SAM CLI's own
    code (it splits unquoted values at spaces, so this is the only faithful reading)."""
    bin_dir = ensure_sam_venv()
    result = _run(
        [str(bin_dir / "python"), "-c", _READ_OVERRIDES, str(samconfig)],
        env=tool_env(),
        timeout=120.0,
        check=True,
    )
    parsed = json.loads(result.output.strip().splitlines()[-1])
    return {str(key): str(value) for key, value in parsed.items()}


def _run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float,
    check: bool,
) -> ToolResult:
    started = time.monotonic()
    completed = subprocess.run(  # noqa: S603 - argv built here from fixed parts, no shell
        list(args),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = ToolResult(
        tuple(args), completed.returncode, completed.stdout, time.monotonic() - started
    )
    if check and not result.ok:
        raise ToolError(result)
    return result


def _stamp_matches(stamp: Path, wanted: str, bin_dir: Path) -> bool:
    try:
        recorded = stamp.read_text()
    except OSError:
        return False
    # The venv's python links to its base interpreter: a removed base means a rebuild.
    return (
        recorded == wanted
        and (bin_dir / "sam").is_file()
        and (bin_dir / "cfn-lint").is_file()
        and (bin_dir / "python").resolve().is_file()
    )


def installed_versions(venv: Path = SAM_VENV) -> dict[str, str]:
    """Distribution name -> version installed in `venv`, read from its metadata (no process)."""
    found: dict[str, str] = {}
    for site_packages in sorted(venv.glob("lib/python3*/site-packages")):
        for distribution in importlib.metadata.distributions(path=[str(site_packages)]):
            found[distribution.metadata["Name"].lower()] = distribution.version
    return found


def tool_versions(bin_dir: Path | None = None) -> dict[str, str]:
    """What `sam --version` and `cfn-lint --version` print."""
    bin_dir = bin_dir or ensure_sam_venv()
    return {
        name: _run(
            [str(bin_dir / name), "--version"], env=tool_env(), timeout=120.0, check=True
        ).output.strip()
        for name in ("sam", "cfn-lint")
    }


def _check_versions(bin_dir: Path) -> None:
    """The pins must be what actually runs (a stray constraint file could override them)."""
    versions = tool_versions(bin_dir)
    if AWS_SAM_CLI_VERSION not in versions["sam"] or CFN_LINT_VERSION not in versions["cfn-lint"]:
        raise RuntimeError(f"unexpected tool versions: {versions}")


def _base_python() -> str:
    """The interpreter behind the one running this (a venv's base), so `.sam-venv` does not
    nest inside the project's venv."""
    base = getattr(sys, "_base_executable", None)
    return base if isinstance(base, str) and base else sys.executable


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.sam.tools", description=__doc__)
    parser.add_argument("command", choices=["install", "validate", "lint", "build"])
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    options = parser.parse_args(argv)
    started = time.monotonic()
    if options.command == "install":
        bin_dir = ensure_sam_venv()
        print(f"SAM tools ready in {bin_dir} ({time.monotonic() - started:.1f}s)")
        return 0
    if options.command == "validate":
        result = validate(options.template.resolve(), check=False)
    elif options.command == "lint":
        result = lint([options.template.resolve()], check=False)
    else:
        result = build(
            options.build_dir.resolve(), template=options.template.resolve(), check=False
        )
    print(result.output, end="" if result.output.endswith("\n") else "\n")
    print(f"{options.command}: exit {result.returncode} in {result.seconds:.1f}s", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
