"""``certway`` — every command maps errors in one place: a red line and exit code 2."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, get_args, overload

import typer
from rich.console import Console, ConsoleDimensions
from rich.text import Text

# typer vendors click (and its help shows `<str>`-style type names, replaced below)
from typer._click.core import Context
from typer._click.exceptions import BadParameter, UsageError
from typer._click.globals import get_current_context
from typer.core import TyperArgument, TyperGroup, TyperOption

from certway import __version__
from certway.errors import CertwayError, PolicyViolation
from certway.pki.csr import DIGESTS, Role, UcmFormat
from certway.pki.keys import KEY_TYPES
from certway.store.db import default_data_dir

if TYPE_CHECKING:
    from certway.services.node import Node

__all__ = ["app", "main"]

MAX_INPUT_BYTES = 64 * 1024 * 1024
"""Largest file any command reads (a 1,000,000-entry CRL is about 50 MB)."""


# markup=False: certificate subjects, URLs and error messages carry user-controlled text that
# must be printed as it is, never interpreted as Rich markup. Colour goes through `styled`.
class _Console(Console):
    """A terminal gets tables fitted to its width; piped output (files, scripts, tests)
    gets them unwrapped, whatever the environment says about terminals."""

    @property
    def size(self) -> ConsoleDimensions:
        if self.file.isatty():
            return super().size
        return ConsoleDimensions(1000, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


out = _Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = _Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style`` followed by plain ``rest`` (no markup parsing anywhere)."""
    return Text.assemble((label, style), rest)


# What the help shows for a value, instead of the Python type names typer prints by default
# (`<str>`, `<list[path]>`). Options with a fixed set of values give `metavar="a|b|c"`.
_VALUE_WORDS = {"str": "TEXT", "int": "N", "float": "NUMBER", "path": "FILE"}


def _value_word(param: Any) -> str:
    label = str(param.display_type(None)).strip("<>")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    return _VALUE_WORDS.get(label, label)


def _number(param: Any, ctx: Any, value: Any) -> Any:
    """A number option's text as a number, refused in the product's words ("'abc' is not a
    whole number") rather than the parser library's."""
    kind = param.type_descriptor.annotation
    if not isinstance(value, str) or kind not in (int, float):
        return value
    text = value.strip()
    try:
        if kind is int:
            return int(text, 10)
        number = float(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise BadParameter(f"'{value}' is not {what}", ctx=ctx, param=param) from None
    if not math.isfinite(number):
        raise BadParameter(f"'{value}' is not a finite number", ctx=ctx, param=param)
    return number


class _Option(TyperOption):
    def process_value(self, ctx: Any, value: Any) -> Any:
        return super().process_value(ctx, _number(self, ctx, value))

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count or self.display_type(ctx) == "<bool>":
            return None
        return _value_word(self)


class _Argument(TyperArgument):
    def process_value(self, ctx: Any, value: Any) -> Any:
        return super().process_value(ctx, _number(self, ctx, value))

    def display_type_rich(self, ctx: Any) -> str | None:
        return self.metavar if self.metavar is not None else _value_word(self)

    def _rich_display_name(self) -> str:
        return self.name.upper() + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self.name.upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


def _humanise(params: list[Any]) -> list[Any]:
    """Help that a person reads: no Python type names; a flag shows no value, an option its
    choices (``metavar="a|b"`` where it is declared) or a word (TEXT, N, FILE)."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


def _humanise_command(command: Any) -> None:
    help_option = command.get_help_option(Context(command))
    _humanise([*command.params, *([help_option] if help_option is not None else [])])


class _Group(TyperGroup):
    """Maps certway errors and unreadable files to one clear line and exit code 2 (or, with
    ``--json``, one JSON object on stderr with the same exit code)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if not isinstance(command, _Group):
                _humanise_command(command)

    def get_params(self, ctx: Any) -> list[Any]:
        # typer adds the completion options after building the group
        return _humanise(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:  # the whole command line, before any parsing can fail
            ctx.meta[_JSON_KEY] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (CertwayError, InputFileError) as exc:
            fail(exc, ctx=ctx)
        except UsageError as exc:
            if not ctx.meta.get(_JSON_KEY):
                raise
            _print_error("usage", exc.format_message(), exc.exit_code)
            raise typer.Exit(exc.exit_code) from None


_JSON_KEY = "certway.json"
"""In the context's meta (shared by the whole command tree): errors are printed as JSON."""


def _print_error(code: str, message: str, exit_code: int) -> None:
    err.print(
        json.dumps({"error": {"code": code, "message": message, "exit_code": exit_code}}),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def error_code(exc: BaseException) -> str:
    """A stable machine-readable code for an error (the ``code`` of JSON errors)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    if isinstance(exc, InputFileError):
        return "input-file"
    name = type(exc).__name__
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def fail(exc: BaseException, exit_code: int = 2, *, ctx: Any = None) -> NoReturn:
    """Print ``exc`` as one red line (or a JSON error under ``--json``) and exit; the line
    ends with the command line's hint that ``cli_hints`` added, if any."""
    ctx = ctx or get_current_context(silent=True)
    message = str(exc) + "".join(f" {hint}" for hint in getattr(exc, _HINTS, ()))
    if ctx is not None and ctx.meta.get(_JSON_KEY):
        _print_error(error_code(exc), message, exit_code)
    else:
        err.print(styled("error:", "red", f" {message}"))
    raise typer.Exit(exit_code)


_HINTS = "certway_cli_hints"
"""Attribute of an error: the command line's words added to its message by ``cli_hints``."""


@contextmanager
def cli_hints(
    hints: Mapping[str, str] | Mapping[str | type[CertwayError], str],
) -> Iterator[None]:
    """Add the command line's own words to a service's error. The services name a setting as
    every interface knows it ("StartTLS", "the bind DN"); a command adds the option that
    gives it (``(--starttls)``). ``hints`` maps an error's code (``error_code``), or an error
    class, to the words printed after its message."""
    try:
        yield
    except CertwayError as exc:
        hint = hints.get(error_code(exc)) or next(
            (
                words
                for kind, words in hints.items()
                if isinstance(kind, type) and isinstance(exc, kind)
            ),
            None,
        )
        if hint is not None:
            setattr(exc, _HINTS, (*getattr(exc, _HINTS, ()), hint))
        raise


def _note_json(ctx: typer.Context, value: bool) -> bool:
    if value:
        ctx.meta[_JSON_KEY] = True
    return value


class InputFileError(Exception):
    pass


def _typer(help_text: str, *, completion: bool = False) -> typer.Typer:
    return typer.Typer(
        cls=_Group,
        help=help_text,
        no_args_is_help=True,
        add_completion=completion,
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
    )


app = _typer("certway: certificate lifecycle for secure communications edges.", completion=True)
key_app = _typer("Offline private keys.")
csr_app = _typer("Offline certificate signing requests with the Expressway name rules.")
ca_app = _typer("The local certificate authority: CAs, signing, revocation, inventory.")
app.add_typer(key_app, name="key")
app.add_typer(csr_app, name="csr")
app.add_typer(ca_app, name="ca")

# -- options with a fixed set of values ---------------------------------------------------------
ON_OFF = ("on", "off")
"""The values of the CLI's on/off switches."""


@overload
def on_off(value: str, option: str, code: str) -> bool: ...
@overload
def on_off(value: str | None, option: str, code: str) -> bool | None: ...
def on_off(value: str | None, option: str, code: str) -> bool | None:
    """The value of an on/off switch (``ON_OFF``; true/false and yes/no too, in any case), or
    None when it was not given; ``code``: the error's code when it is neither."""
    if value is None:
        return None
    if value.lower() in {"on", "true", "yes"}:
        return True
    if value.lower() in {"off", "false", "no"}:
        return False
    raise PolicyViolation(code, f"{option} must be on or off, not '{value}'")


def complete_from(values: Iterable[str]) -> Callable[[str], list[str]]:
    """Shell completion of an option's values: those of ``values`` that start with what is
    typed (``values`` is the product's own list, so completion follows it)."""
    choices = tuple(str(v) for v in values)

    def complete(incomplete: str) -> list[str]:
        return [value for value in choices if value.startswith(incomplete)]

    return complete


def complete_list_from(values: Iterable[str]) -> Callable[[str], list[str]]:
    """Shell completion of a comma-separated list of ``values`` (``mon,tu`` → ``mon,tue``):
    the last item is completed, the ones before it are kept."""
    choices = tuple(str(v) for v in values)

    def complete(incomplete: str) -> list[str]:
        done, _, last = incomplete.rpartition(",")
        prefix = f"{done}," if done else ""
        given = set(done.split(","))
        return [prefix + v for v in choices if v.startswith(last) and v not in given]

    return complete


_MAX_CHOICE_METAVAR = 24
"""Longer lists of values go into the help text: a help table of 80 columns would break
them in the middle of a word."""


def _choice_help(
    values: tuple[str, ...], help_text: str, metavar: str | None, param_decls: tuple[str, ...]
) -> tuple[str, str | None]:
    """(metavar, help) of an option taking one of ``values``."""
    joined = "|".join(values)
    if metavar is None and len(joined) <= _MAX_CHOICE_METAVAR:
        return joined, help_text or None  # the values are the metavar: `--to pem|der|p12|p7b`
    if metavar is None:  # `--profile PROFILE ... One of server-client, server, client.`
        longest = max(param_decls, key=len, default="value")
        metavar = longest.lstrip("-").upper()
    listed = f"One of {', '.join(values)}."
    return metavar, f"{help_text} {listed}".strip()


def choice(
    *param_decls: str,
    values: Iterable[str],
    help: str = "",
    metavar: str | None = None,
    **kwargs: Any,
) -> Any:
    """``typer.Option`` for an option taking one of ``values``: the shell completes them and
    --help lists them (as the metavar ``a|b|c``, or after the help text when a ``metavar``
    word such as ``TYPE`` is given). Checking a value stays with the service that uses it,
    so a wrong one gets the service's message."""
    names = tuple(str(v) for v in values)
    shown, text = _choice_help(names, help, metavar, param_decls)
    return typer.Option(
        *param_decls, metavar=shown, help=text, autocompletion=complete_from(names), **kwargs
    )


def choice_argument(
    *, values: Iterable[str], help: str = "", metavar: str | None = None, **kwargs: Any
) -> Any:
    """``typer.Argument`` taking one of ``values``, as :func:`choice`."""
    names = tuple(str(v) for v in values)
    shown, text = _choice_help(names, help, metavar, ())
    return typer.Argument(metavar=shown, help=text, autocompletion=complete_from(names), **kwargs)


KeyTypeOpt = Annotated[
    str, choice("--key-type", values=KEY_TYPES, metavar="TYPE", help="Type of the new key.")
]
DigestOpt = Annotated[str, choice("--digest", values=DIGESTS, help="Signature hash.")]

JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print JSON instead of text (errors too).", callback=_note_json),
]

# The Expressway name fields of a CSR (the CSR form), shared by `csr create`, `server-cert csr
# generate` and `domain csr generate`.
UcmDomainOpt = Annotated[
    list[str] | None, typer.Option("--ucm-domain", help="UCM registration domain (edge role).")
]
UcmFormatOpt = Annotated[
    str,
    choice(
        "--ucm-domain-format",
        values=get_args(UcmFormat),
        help="How UCM registration domains are written.",
    ),
]
XmppDomainOpt = Annotated[
    list[str] | None, typer.Option("--xmpp-domain", help="XMPP federation domain (edge role).")
]
ChatAliasOpt = Annotated[
    list[str] | None, typer.Option("--chat-alias", help="IM and Presence chat node alias.")
]
PhoneProfileOpt = Annotated[
    list[str] | None,
    typer.Option("--phone-security-profile", help="UCM phone security profile FQDN (core role)."),
]


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="CERTWAY_DATA_DIR",
            metavar="DIR",
            help="Data directory of the node (default ./certway-data).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    ctx.obj = data_dir or default_data_dir()


def _version(value: bool) -> None:
    if value:
        out.print(f"certway {__version__}")
        raise typer.Exit(0)


# -- shared helpers --------------------------------------------------------------------------
def read_input(path: Path, what: str = "file") -> bytes:
    """Read a user-given file with a size limit and a clear error."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            size = path.stat().st_size
            if size > MAX_INPUT_BYTES:
                raise InputFileError(
                    f"{what} {path} is too large ({size} bytes; limit {MAX_INPUT_BYTES})"
                )
            data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise InputFileError(f"{what} {path} cannot be read (permission denied)") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputFileError(f"{what} is too large (limit {MAX_INPUT_BYTES} bytes)")
    if not data:
        raise InputFileError(f"{what} {path} is empty")
    return data


def read_passphrase(path: Path | None) -> bytes | None:
    """The first line of a passphrase file (like openssl's ``-passin file:``)."""
    if path is None:
        return None
    data = read_input(path, "passphrase file")
    line = data.splitlines()[0] if data.splitlines() else b""
    if not line:
        raise InputFileError(f"passphrase file {path} has an empty first line")
    return line


def write_output(path: Path | None, data: bytes, *, secret: bool = False) -> None:
    """Write to ``path`` atomically (0600 for secrets), or to stdout when no path."""
    if path is None or str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputFileError(f"cannot write {path}: {exc.strerror}") from None


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(type(value).__name__)


def node(ctx: typer.Context) -> Node:
    """The node of the ``--data-dir`` (callers close it); prefer ``open_node``."""
    from certway.services.node import Node

    data_dir: Path = ctx.obj
    return Node.open(data_dir)


@contextmanager
def open_node(ctx: typer.Context) -> Iterator[Node]:
    """``with open_node(ctx) as n:`` — the node of ``--data-dir``, closed afterwards."""
    n = node(ctx)
    try:
        yield n
    finally:
        n.close()


def parse_when(text: str | None, what: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PolicyViolation(
            "date", f"{what} '{text}' is not an ISO date such as 2026-10-02T12:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# -- init ------------------------------------------------------------------------------------
@app.command()
def init(
    ctx: typer.Context,
    fqdn: Annotated[
        str | None, typer.Option("--fqdn", help="System FQDN (default: this host's FQDN).")
    ] = None,
    role: Annotated[
        str | None, choice("--role", values=get_args(Role), help="The node's role (default edge).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="A cluster node: the shared PostgreSQL database (postgresql://user@host/db). "
            "Without --join it must be empty: a new cluster (schema and cluster key).",
        ),
    ] = None,
    join: Annotated[
        Path | None,
        typer.Option("--join", help="Join the cluster of --database with this exported key file."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="File whose first line opens the --join key."),
    ] = None,
) -> None:
    """Create the data directory (database, master key 0600) and the factory state: a
    temporary CA, trusted, and a server certificate issued by it."""
    from certway.services.node import Node
    from certway.store.keyexport import open_key

    data_dir: Path = ctx.obj
    join_key = None
    if join is not None or passphrase_file is not None:
        if database is None or join is None or passphrase_file is None:
            raise InputFileError("joining a cluster needs --database, --join and --passphrase-file")
        passphrase = read_passphrase(passphrase_file) or b""
        join_key = open_key(read_input(join, "cluster key file"), passphrase.decode())
    existed = (data_dir / "master.key").exists()
    if database is not None and existed:
        raise InputFileError(
            f"{data_dir} is already a certway data directory: a cluster node needs a new one "
            "(an embedded node moves to PostgreSQL with 'certway db migrate --to URL')"
        )
    with cli_hints({"fqdn": "(--fqdn)"}):
        node = Node.init(data_dir, fqdn=fqdn, role=role, database=database, join_key=join_key)
    try:
        server = node.identities.info("server")
        node_id = node.cluster.node_id
    finally:
        node.close()
    if existed:
        out.print(f"data directory {data_dir} is already initialised (schema up to date)")
        return
    if database is not None:
        how = "joined the cluster" if join_key is not None else "created the cluster"
        out.print(
            f"initialised {data_dir}: {how} as peer {node_id} (cluster key "
            f"{data_dir / 'master.key'}, mode 0600)"
        )
    else:
        out.print(f"initialised {data_dir} (master key {data_dir / 'master.key'}, mode 0600)")
    out.print(
        f"server certificate: {server.subject}, issued by the temporary CA "
        f"({', '.join(server.alt_names)}); replace it with 'certway server-cert csr generate'"
    )


from certway.cli import (  # noqa: E402,F401  (registers the commands)
    acme_commands,
    acme_server_commands,
    automation_commands,
    backup_commands,
    cluster_commands,
    commands,
    issue_commands,
    ldap_commands,
    node_commands,
    serve_commands,
    sip_commands,
    syslog_commands,
    tls_commands,
    token_commands,
    trust_commands,
    zone_commands,
)


def main() -> None:
    try:
        app()
    except Exception as exc:
        if os.environ.get("CERTWAY_DEBUG"):
            raise
        # A bug, not bad input. Only the type is shown: messages of library errors can
        # carry data (SQL parameters) that has no place on a terminal.
        err.print(
            styled(
                "internal error:",
                "red",
                f" {type(exc).__name__}; run with CERTWAY_DEBUG=1 for details and please report it",
            )
        )
        sys.exit(1)
