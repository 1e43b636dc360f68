"""``diffucoder sandbox serve`` (the service) and ``diffucoder sandbox run FILE --tests FILE`` (for humans)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from diffucoder.sandbox.config import SandboxConfig, load_sandbox_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sandbox", help="isolated code execution service and rewards")
    sub = parser.add_subparsers(dest="sandbox_command", required=True)
    defaults = SandboxConfig()

    serve = sub.add_parser("serve", help="run the sandbox HTTP service")
    serve.add_argument("--config", help="preset name or YAML file whose `sandbox:` section to use")
    serve.add_argument("overrides", nargs="*", metavar="key=value", help="sandbox config overrides")
    serve.add_argument("--host", help=f"default {defaults.host}")
    serve.add_argument("--port", type=int, help=f"default {defaults.port}")
    serve.add_argument("--workers", type=int, help=f"warm executor slots (default {defaults.workers})")
    serve.add_argument("--queue-size", type=int)
    serve.add_argument(
        "--uid-base",
        type=int,
        help="slot i runs code as uid BASE+i (root only); give servers on one host distinct bases",
    )
    serve.add_argument("--no-bubblewrap", action="store_true", help="do not wrap slots in bubblewrap")
    serve.add_argument(
        "--insecure-dev",
        action="store_true",
        help="serve even when mandatory isolation layers are missing (never for untrusted code)",
    )
    serve.set_defaults(func=_serve)

    run = sub.add_parser("run", help="run a Python file against tests in a local sandbox and print verdicts")
    run.add_argument("file", type=Path, help="the solution (.py)")
    run.add_argument("--tests", type=Path, help="a file of assert statements, one test per line")
    run.add_argument("--url", help="use this running server instead of starting one")
    run.add_argument("--time-limit", type=float, default=defaults.time_limit_s, help="seconds per test")
    run.add_argument("--json", action="store_true", help="print the full result as JSON")
    run.set_defaults(func=_run)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from diffucoder import logs
    from diffucoder.sandbox.server import InsecureHostError, create_app

    logs.configure()
    try:
        cfg = load_sandbox_config(args.config, args.overrides)
        flags = {
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "queue_size": args.queue_size,
            "sandbox_uid_base": args.uid_base,
            "bubblewrap": False if args.no_bubblewrap else None,
        }
        for key, value in flags.items():
            if value is not None:  # explicit flags win over the config
                setattr(cfg, key, value)
    except (ValueError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(cfg, insecure_dev=args.insecure_dev)
    try:
        uvicorn.run(
            app,
            host=cfg.host,
            port=cfg.port,
            log_level="warning",
            # C event loop and HTTP parser: about a third of the server's CPU per one-job request
            # compared with asyncio's loop and h11 (BENCHMARKS.md, ``## sandbox``)
            loop="uvloop",
            http="httptools",
            timeout_graceful_shutdown=int(cfg.shutdown_grace_s),
        )
    except InsecureHostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def read_tests(path: Path) -> list[str]:
    """One assert per non-empty line; lines starting with '#' are comments."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"error: cannot read tests file {path}: {exc}") from None
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _run(args: argparse.Namespace) -> int:
    from diffucoder.sandbox.client import Job, SandboxClient
    from diffucoder.sandbox.local import local_sandbox

    try:
        code = args.file.read_text()
    except OSError as exc:
        raise SystemExit(f"error: cannot read {args.file}: {exc}") from None
    tests = read_tests(args.tests) if args.tests else []
    job = Job(code=code, tests=tests, time_limit_s=args.time_limit)
    if args.url:
        with SandboxClient(args.url) as client:
            result = client.run(job)
    else:
        with local_sandbox() as url, SandboxClient(url) as client:
            result = client.run(job)
    if args.json:
        print(json.dumps(result.__dict__, indent=2, default=str))
    else:
        if result.infra_error:
            print(f"infrastructure error: {result.infra_error}")
            return 3
        for test, verdict in zip(tests, result.verdicts, strict=True):
            print(f"{verdict:>12}  {test}")
        print(
            f"passed {result.passed}/{result.total}  program: {result.program_status}"
            + (f" ({result.program_error})" if result.program_error else "")
        )
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                print(f"--- {name} ---\n{text.rstrip()}")
    return 0 if result.infra_error is None and result.passed == result.total else 1
