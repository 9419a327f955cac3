"""The ``flowdrop`` command line. Exit codes: 0 success, 1 request or run failed, 2 usage or
configuration error. Errors are printed as ``code: message``, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowdrop import __version__
from flowdrop.core.errors import FlowdropError
from flowdrop.daemon.config import ConfigError, Settings, describe_error, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code is 2 too; keep the format
        self.print_usage(sys.stderr)
        sys.stderr.write(f"usage_error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flowdrop",
        description="Drop a JSON run request into an inbox, get status and result files.",
    )
    parser.add_argument("--version", action="version", version=f"flowdrop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("demo", help="the whole loop on bundled templates in a temporary spool")

    serve = sub.add_parser("serve", help="run the daemon (foreground unless --detach)")
    serve.add_argument(
        "--config", type=Path, help="YAML config (default: $FLOWDROP_CONFIG or built-in defaults)"
    )
    serve.add_argument("--once", action="store_true", help="drain the inbox, then exit")
    serve.add_argument("--detach", action="store_true", help="daemonize (hosts without systemd)")
    serve.add_argument("--pidfile", type=Path, help="pidfile to write with --detach")

    submit = sub.add_parser("submit", help="drop a request file atomically into the inbox")
    submit.add_argument("request", type=Path, metavar="REQUEST.json")
    submit.add_argument("--config", type=Path)
    submit.add_argument("--wait", action="store_true", help="follow the status until it ends")
    submit.add_argument("--timeout", type=float, default=300.0, metavar="S")

    status = sub.add_parser("status", help="recent requests, or one request in detail")
    status.add_argument("request_id", nargs="?", metavar="REQUEST_ID")
    status.add_argument("--config", type=Path)
    status.add_argument("--json", action="store_true")
    status.add_argument("--html", type=Path, metavar="FILE", help="write the spool overview page")
    status.add_argument("--watch", action="store_true", help="with --html: keep it current")

    validate = sub.add_parser("validate", help="load and validate a template")
    validate.add_argument("template", type=Path, metavar="TEMPLATE.yaml")

    simulate = sub.add_parser("simulate", help="simulate a template into a run directory")
    simulate.add_argument("template", type=Path, metavar="TEMPLATE.yaml")
    simulate.add_argument("--param", action="append", default=[], metavar="k=v")
    simulate.add_argument("--seed", type=int)
    simulate.add_argument("--out", type=Path, required=True, metavar="RUN_DIR")

    report = sub.add_parser("report", help="write a run's self-contained HTML report")
    report.add_argument(
        "run", metavar="RUN", help="a run directory or a run id under the runs root"
    )
    report.add_argument("--config", type=Path)
    report.add_argument("--out", type=Path, metavar="FILE", help="default: ./<runId>.html")

    parity = sub.add_parser(
        "parity", help="simulate, capture, replay and compare a template bin for bin"
    )
    parity.add_argument("template_id", metavar="TEMPLATE_ID")
    parity.add_argument("--param", action="append", default=[], metavar="k=v")
    parity.add_argument("--seed", type=int)
    parity.add_argument("--config", type=Path)
    parity.add_argument("--report", type=Path, metavar="FILE", help="write the overlay as HTML")

    doctor = sub.add_parser("doctor", help="check roots, permissions, inotify limits, filesystems")
    doctor.add_argument("--config", type=Path)

    prune = sub.add_parser(
        "prune", help="remove finished requests, old outbox/quarantine files and unneeded runs"
    )
    prune.add_argument("--config", type=Path)
    prune.add_argument(
        "--older-than",
        metavar="AGE",
        help="one limit for everything, e.g. 30d, 12h, 90m (default: the retain_* config keys)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    prune.add_argument("--json", action="store_true", help="the report as JSON")
    prune.add_argument("--verbose", action="store_true", help="list every entry kept for its age")

    schema = sub.add_parser("schema", help="print the JSON Schemas of the file contract")
    schema.add_argument("--markdown", action="store_true", help="as docs/protocol.md's section")
    return parser


def _settings(path: Path | None) -> Settings:
    return load_settings(path)


def _fail(error: FlowdropError) -> int:
    sys.stderr.write(f"error: {error.code.value}: {error.message}\n")
    return EXIT_FAILED


def parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        msg = f"--param expects k=v, got {text!r}"
        raise ValueError(msg)
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def cmd_serve(args: argparse.Namespace) -> int:
    from flowdrop.daemon.lifecycle import serve

    if args.detach and args.pidfile is None:
        sys.stderr.write("usage_error: --detach needs --pidfile P\n")
        return EXIT_USAGE
    settings = _settings(args.config)
    return serve(
        settings,
        config_path=args.config,
        once=args.once,
        detach=args.detach,
        pidfile=args.pidfile,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from flowdrop.daemon.spool import Spool, read_status_file
    from flowdrop.daemon.submit import SubmitError, describe_result, drop, request_id_of, wait_for

    settings = _settings(args.config)
    spool = Spool(settings.spool, settings.instance)
    try:
        raw = args.request.read_bytes()
    except OSError as exc:
        sys.stderr.write(f"usage_error: cannot read {args.request}: {exc.strerror}\n")
        return EXIT_USAGE
    request_id = request_id_of(args.request, raw)
    before = read_status_file(spool.status_path(request_id)) if request_id else None
    since = time.time()
    try:
        dropped = drop(spool, args.request)
    except SubmitError as exc:
        sys.stderr.write(f"usage_error: {exc}\n")
        return EXIT_USAGE
    print(f"submitted {dropped.name} (requestId {request_id})")
    if not args.wait:
        return EXIT_OK
    outcome = wait_for(
        spool,
        request_id,
        dropped.name,
        before=before,
        since=since,
        timeout=args.timeout,
        out=sys.stdout,
    )
    describe_result(outcome.result, sys.stdout)
    return outcome.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from flowdrop.daemon.spool import Spool
    from flowdrop.daemon.submit import status_command

    settings = _settings(args.config)
    spool = Spool(settings.spool, settings.instance)
    if args.html is not None:
        from flowdrop.daemon.statuspage import html_command

        return html_command(spool, settings.runs_root, args.html, watch=args.watch)
    if args.watch:
        sys.stderr.write("usage_error: --watch needs --html FILE\n")
        return EXIT_USAGE
    return status_command(spool, args.request_id, as_json=args.json)


def cmd_validate(args: argparse.Namespace) -> int:
    from flowdrop.core import engine

    try:
        template = engine.load_template(args.template)
        engine.validate_template(template)
    except FlowdropError as exc:
        return _fail(exc)
    except OSError as exc:
        sys.stderr.write(f"usage_error: cannot read {args.template}: {exc.strerror}\n")
        return EXIT_USAGE
    extra = f", captureKey {template.capture_key}" if template.capture_key else ""
    print(f"ok: {template.id} {template.version} ({template.title}{extra})")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from flowdrop.core import engine

    try:
        params = dict(parse_param(item) for item in args.param)
    except ValueError as exc:
        sys.stderr.write(f"usage_error: {exc}\n")
        return EXIT_USAGE
    started = time.monotonic()
    try:
        template = engine.load_template(args.template)
        info = engine.simulate(template, params, args.out, rng_seed=args.seed)
    except FlowdropError as exc:
        return _fail(exc)
    except OSError as exc:
        sys.stderr.write(f"error: storage_error: {exc.strerror or exc}\n")
        return EXIT_FAILED
    elapsed = (time.monotonic() - started) * 1000
    print(f"run {info.run_id}")
    print(
        f"  template {template.id} {template.version}; {len(info.series_ids)} series; "
        f"{len(info.warnings)} warning(s); {elapsed:.0f} ms"
    )
    print(f"  written to {args.out}")
    for warning in info.warnings[:10]:
        print(f"  warning: {warning.get('code')}: {warning.get('message')}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from flowdrop.daemon.reports import report_command

    return report_command(args.run, _settings(args.config), args.out)


def cmd_parity(args: argparse.Namespace) -> int:
    from flowdrop.daemon.reports import parity_command

    try:
        params = dict(parse_param(item) for item in args.param)
    except ValueError as exc:
        sys.stderr.write(f"usage_error: {exc}\n")
        return EXIT_USAGE
    settings = _settings(args.config)
    return parity_command(args.template_id, params, args.seed, settings, args.report)


def cmd_doctor(args: argparse.Namespace) -> int:
    from flowdrop.daemon.doctor import print_checks, run_checks

    settings = _settings(args.config)
    print(f"config: {args.config or 'built-in defaults'}; instance {settings.instance}")
    return print_checks(run_checks(settings), sys.stdout)


def cmd_prune(args: argparse.Namespace) -> int:
    from flowdrop.daemon.config import parse_duration
    from flowdrop.daemon.prunereport import describe
    from flowdrop.daemon.retention import prune

    older_than = None
    if args.older_than is not None:
        try:
            older_than = parse_duration(args.older_than)
        except ValueError as exc:
            sys.stderr.write(f"usage_error: --older-than: {exc}\n")
            return EXIT_USAGE
        if older_than is None:
            sys.stderr.write("usage_error: --older-than needs an age (e.g. 30d), not never\n")
            return EXIT_USAGE
    settings = _settings(args.config)
    report = prune(settings, older_than=older_than, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for line in describe(report, verbose=args.verbose):
            print(line)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_demo(_args: argparse.Namespace) -> int:
    from flowdrop.daemon.demo import run_demo

    return run_demo(sys.stdout)


def cmd_schema(args: argparse.Namespace) -> int:
    from flowdrop.daemon.schemas import markdown_section, schemas_json

    sys.stdout.write(markdown_section() if args.markdown else schemas_json())
    return EXIT_OK


COMMANDS = {
    "serve": cmd_serve,
    "submit": cmd_submit,
    "status": cmd_status,
    "validate": cmd_validate,
    "simulate": cmd_simulate,
    "report": cmd_report,
    "parity": cmd_parity,
    "doctor": cmd_doctor,
    "demo": cmd_demo,
    "prune": cmd_prune,
    "schema": cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(describe_error(exc) + "\n")
        return EXIT_USAGE
    except FlowdropError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
