"""``ape run demo`` (what ``make demo`` runs): start a local anvil node, deploy,
seed a winery, custodian, 1,000-bottle lot and holders, and serve the API on
127.0.0.1 until Ctrl-C, which stops the API and the node."""

import os
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, network_option

from amphora.cli import is_local
from amphora.demo import describe, seed, serve


@click.command(cls=ConnectedProviderCommand, short_help="Run the local demo")
@network_option()
@click.option("--port", type=int, default=lambda: int(os.environ.get("AMPHORA_DEMO_PORT", "8000")),
              show_default="8000, or AMPHORA_DEMO_PORT")
def cli(provider, port):
    if not is_local():
        raise click.UsageError("the demo seeds test accounts: run it on the local network only")
    host = "127.0.0.1"
    base_url = f"http://{host}:{port}"
    world = seed(base_url, Path(".demo") / "bottles.json")
    click.echo(describe(world, base_url, provider.uri))
    serve(world, provider.uri, host, port)
