"""Command line: argument parsing and dispatch only.

Subcommands import what they use, lazily, so that ``hadirector run`` starts fast (the
daemon never imports scapy), ``check-config`` needs neither trio nor pyroute2, and
``status`` and ``reload`` load only the standard-library control client (and the
configuration loader when they read the socket path from a file).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hadirector.config.schema import Config

DEFAULT_CONFIG = "/etc/hadirector/hadirector.toml"
# The same as config.schema.DEFAULT_CONTROL_SOCKET (a test checks), written here so that
# `hadirector status` without a configuration file imports no configuration code.
DEFAULT_CONTROL_SOCKET = "/run/hadirector/hadirector.sock"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hadirector", description="VRRP and IPVS high-availability agent for LVS directors"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the agent in the foreground")
    run.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="TOML configuration file")
    run.add_argument("--log-format", choices=["json", "console"], default="json")
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="overrides [global].log_level",
    )

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    check.add_argument(
        "--bird-config",
        default="/etc/bird/bird.conf",
        help="BIRD configuration compared with [anycast] route_table (anycast only)",
    )

    ipvs = sub.add_parser("ipvs", help="IPVS table tools")
    ipvs_sub = ipvs.add_subparsers(dest="ipvs_command")
    ipvs_sub.add_parser("save", help="print the live IPVS table as `ipvsadm -S -n` does")
    imp = ipvs_sub.add_parser("import", help="turn ipvsadm rules into [[virtual_server]] TOML")
    imp.add_argument("file", help="ipvsadm-save output or ipvsadm command lines ('-' = stdin)")

    imp_top = sub.add_parser("import", help="convert another tool's configuration to TOML")
    imp_sub = imp_top.add_subparsers(dest="import_command")
    ka_in = imp_sub.add_parser("keepalived", help="keepalived.conf -> TOML on stdout")
    ka_in.add_argument("file", help="keepalived.conf ('-' = stdin)")
    ka_in.add_argument(
        "--config-id",
        help="keepalived's config id for @ID lines (default: the host name's first part, "
        "as keepalived)",
    )
    exp_top = sub.add_parser("export", help="convert the TOML to another tool's configuration")
    exp_sub = exp_top.add_subparsers(dest="export_command")
    ka_out = exp_sub.add_parser("keepalived", help="TOML -> keepalived.conf on stdout")
    ka_out.add_argument("file", help="hadirector TOML file")

    status = sub.add_parser("status", help="show the running agent's state (control socket)")
    status.add_argument("--json", action="store_true", help="print the raw JSON report")
    _socket_args(status)
    reload = sub.add_parser("reload", help="re-read the running agent's configuration (SIGHUP)")
    _socket_args(reload)
    for name, what in (
        ("drain", "put a real server at weight 0 for maintenance (kept across restarts)"),
        ("undrain", "give a drained real server its weight back"),
    ):
        drain = sub.add_parser(name, help=what)
        drain.add_argument(
            "service", help='the virtual server: "192.0.2.1:80", "tcp 192.0.2.1:80", "fwmark 7"'
        )
        drain.add_argument("server", help='the real server: "10.0.0.1:8080" (or its address alone)')
        _socket_args(drain)

    demo = sub.add_parser("demo", help="two directors in namespaces of its own, with a failover")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds to run the demo")
    demo.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    demo.add_argument(
        "--anycast",
        action="store_true",
        help="three active directors announced over BGP by BIRD to a router with ECMP",
    )
    return parser


def _socket_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", "-s", help="control socket (default: from the configuration)")
    parser.add_argument(
        "--config", "-c", help=f"take control_socket from this file (default {DEFAULT_CONFIG})"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from hadirector import __version__

        print(__version__)
        return 0
    if args.command == "check-config":
        return _check_config(Path(args.config), args.bird_config)
    if args.command == "run":
        return _run(Path(args.config), args.log_format, args.log_level)
    if args.command == "ipvs":
        if args.ipvs_command == "save":
            return _ipvs_save()
        if args.ipvs_command == "import":
            return _ipvs_import(args.file)
    if args.command == "import" and args.import_command == "keepalived":
        from hadirector.migrate import commands

        return commands.import_keepalived(args.file, args.config_id)
    if args.command == "export" and args.export_command == "keepalived":
        from hadirector.migrate import commands

        return commands.export_keepalived(args.file)
    if args.command in ("status", "reload"):
        return _control(args.command, args.socket, args.config, getattr(args, "json", False))
    if args.command in ("drain", "undrain"):
        return _drain(args.command, args.service, args.server, args.socket, args.config)
    if args.command == "demo":
        if args.anycast:
            from hadirector import demo_anycast

            return demo_anycast.main(duration_s=args.duration)
        from hadirector import demo as demo_mod

        return demo_mod.main(duration_s=args.duration, keep=args.keep)
    _parser().print_help()
    return 2


def _load(path: Path) -> Config | None:
    from hadirector.config.load import load_path
    from hadirector.errors import ConfigError

    try:
        config = load_path(path)
        from hadirector.preflight import preflight

        problems = preflight(config)
        if problems:
            raise ConfigError(problems)
        return config
    except ConfigError as exc:
        print(f"{path}: invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check_config(path: Path, bird_config: str = "/etc/bird/bird.conf") -> int:
    config = _load(path)
    if config is None:
        return 1
    from hadirector.anycast.bird import bird_warnings
    from hadirector.security import config_secret_warning

    warning = config_secret_warning(config, path)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    for text in bird_warnings(config, bird_config):
        print(f"warning: {text}", file=sys.stderr)
    print(
        f"{path}: OK ({len(config.vrrp_instances)} VRRP instance(s), "
        f"{len(config.virtual_servers)} virtual server(s))"
    )
    return 0


def _run(path: Path, log_format: str, log_level: str | None) -> int:
    # Start-up allocates little but modules, classes and configuration, which stay: the
    # collector's passes over them while importing are wasted work (~7 % of the CPU these
    # imports take), and a full pass right after them (~10 ms) would delay the first
    # advert. The collector stays off until the agent's VRRP instances have their first
    # state: the agent then collects once, freezes what is left and turns it back on
    # (Agent._tune_process).
    gc.disable()
    try:
        config = _load(path)
        if config is None:
            gc.enable()
            return 1
        import trio

        from hadirector import agent, logs
        from hadirector.agent.hotloop import MonotonicClock

        level = log_level or config.global_.log_level
        logs.configure(log_format, level)
    except BaseException:
        gc.enable()
        raise
    try:
        trio.run(agent.run_agent, config, path, clock=MonotonicClock())
    except KeyboardInterrupt:
        return 130
    return 0


def _control_socket(socket_path: str | None, config_path: str | None) -> str | None:
    """The socket to use: --socket, else the configuration's (given or default file).

    Only ``[global] control_socket`` is read and checked: an operator asking for the status
    while another part of the file is being edited still gets it (and the full loader
    stays out of this command's start-up)."""
    if socket_path:
        return socket_path
    path = Path(config_path or DEFAULT_CONFIG)
    if config_path is None and not path.exists():
        return DEFAULT_CONTROL_SOCKET
    import tomllib

    from hadirector.config.validate import SUN_PATH_MAX, Checker

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        print(f"{path}: cannot read control_socket: {exc}", file=sys.stderr)
        return None
    section = document.get("global", {})
    value = section.get("control_socket") if isinstance(section, dict) else None
    if value is None:
        return DEFAULT_CONTROL_SOCKET
    checker = Checker()
    checked = checker.abspath(max_bytes=SUN_PATH_MAX)(value, "global.control_socket")
    if checked is None:
        print(f"{path}: cannot read control_socket:", file=sys.stderr)
        for problem in checker.problems:
            print(f"  {problem}", file=sys.stderr)
    return checked


def _drain(
    command: str, service: str, server: str, socket_path: str | None, config_path: str | None
) -> int:
    """``drain`` / ``undrain``: one request over the control socket."""
    from hadirector.control import client

    path = _control_socket(socket_path, config_path)
    if path is None:
        return 1
    try:
        reply = client.request(path, command, service=service, server=server)
    except client.ControlError as exc:
        print(f"hadirector {command}: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"hadirector {command}: {reply.get('error', 'failed')}", file=sys.stderr)
        return 1
    print(reply.get("result", "done"))
    return 0


def _control(command: str, socket_path: str | None, config_path: str | None, as_json: bool) -> int:
    """``status`` and ``reload``: the control client (standard library only, see
    tests/unit/test_cli_client.py) and, with --config or the default file, the loader."""
    import json

    from hadirector.control import client

    path = _control_socket(socket_path, config_path)
    if path is None:
        return 1
    try:
        reply = client.request(path, command)
        status_reply = reply.get("ok") and command == "status"
        snapshot = client.read_status(reply, path) if status_reply else None
    except client.ControlError as exc:
        print(f"hadirector {command}: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"hadirector {command}: {reply.get('error', 'failed')}", file=sys.stderr)
        for problem in reply.get("problems", []):
            print(f"  {problem}", file=sys.stderr)
        return 1
    if command == "reload":
        print("configuration reloaded")
    elif as_json:
        print(json.dumps(reply["status"], indent=2, sort_keys=True))
    elif snapshot is not None:
        sys.stdout.write(client.format_status(snapshot))
    return 0


def _ipvs_save() -> int:
    import trio

    from hadirector.errors import KernelError
    from hadirector.ipvs import kernel, save

    async def dump() -> str:
        ipvs = kernel.IpvsKernel()
        await ipvs.open()
        try:
            return save.format_table(await ipvs.table())
        finally:
            await ipvs.aclose()

    try:
        sys.stdout.write(trio.run(dump))
    except KernelError as exc:
        print(f"hadirector ipvs save: {exc}", file=sys.stderr)
        return 1
    return 0


def _ipvs_import(file: str) -> int:
    from hadirector.errors import ConfigError
    from hadirector.ipvs.importer import import_rules

    text = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        sys.stdout.write(import_rules(text))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{file}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
