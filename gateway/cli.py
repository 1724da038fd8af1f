"""``tearline gateway``: run the TAXII 2.1 gateway, and make the hashes its users' secrets are
stored as. Plugged into ``tearline`` through the ``tearline.commands`` entry point."""

from __future__ import annotations

import ipaddress
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

# The gateway's configuration (pydantic), the SDK and the server are imported by the commands
# that use them: registering this plugin, and `tearline --help`, import none of them.
from tearline.clients.cli.common import fail
from tearline.clients.errors import TearlineError
from tearline.clients.help_format import group

gateway_app = group(
    "A TAXII 2.1 server for this partner node: what it receives, and collections to share "
    "through the broker."
)


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@gateway_app.command("serve")
def serve(
    config: Annotated[Path, typer.Option("--config", help="The gateway's YAML file.")] = Path(
        "gateway.yaml"
    ),
) -> None:
    """Serve TAXII 2.1 on the configured address (loopback unless told otherwise), following
    this node's inbox and publishing what local tools add to writable collections."""
    import uvicorn

    from tearline.clients.keyfile import Identity
    from tearline.gateway.app import create_app
    from tearline.gateway.configfile import load_config

    try:
        settings = load_config(config)
        identity = Identity.load(settings.identity)
    except TearlineError as exc:
        raise fail(exc.message, 2) from None
    if not _loopback(settings.host):
        typer.echo(
            f"warning: listening on {settings.host}, not loopback: put TLS in front of it "
            "(HTTP Basic and bearer tokens travel in the clear otherwise)",
            err=True,
        )
    typer.echo(
        f"gateway of {identity.partner} on http://{settings.host}:{settings.port}/taxii2/ "
        f"(broker {settings.broker}, store {settings.database})",
        err=True,
    )
    uvicorn.run(
        create_app(settings, identity),
        host=settings.host,
        port=settings.port,
        log_level="info",
        # Header limits, as the broker has them.
        http="tearline.broker.http_protocol:BoundedHttpToolsProtocol",
        proxy_headers=False,
        timeout_keep_alive=5,
    )


@gateway_app.command("hash-secret")
def hash_secret_command() -> None:
    """Read a password (prompted, or one line on stdin) and print the hash to put in the
    configuration as a user's password or one of its tokens."""
    from tearline.gateway.config import hash_secret

    if sys.stdin.isatty():
        secret = typer.prompt("secret", hide_input=True, confirmation_prompt=True)
    else:
        secret = sys.stdin.readline().rstrip("\n")
    if len(secret) < 12:
        raise fail("a secret must be at least 12 characters long", 2)
    typer.echo(hash_secret(secret))


@gateway_app.command("new-token")
def new_token() -> None:
    """Make a random bearer token: prints the token (give it to the tool) and its hash (put it
    in the user's tokens)."""
    from tearline.gateway.config import hash_secret

    token = secrets.token_urlsafe(32)
    typer.echo(f"token: {token}")
    typer.echo(f"hash:  {hash_secret(token)}")
