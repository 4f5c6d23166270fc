"""``ape run settlement --from-block A --to-block B``: the points clearing statement.

Per merchant: points issued and redeemed, stablecoin paid in and out, net
position; totals; and whether they reconcile with the reserve's movement on
chain. Exits with status 1 when they do not, after saying where.
"""

import sys
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, network_option

from amphora.cli import load_manifest
from amphora.settlement import SettlementError, statement


@click.command(cls=ConnectedProviderCommand, short_help="Points clearing statement for a block range")
@network_option()
@click.option("--from-block", type=int, default=None, help="First block (default: the points token's deploy block).")
@click.option("--to-block", type=int, default=None, help="Last block, inclusive (default: the latest).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the statement here instead of standard output.")
def cli(provider, from_block, to_block, fmt, out):
    import json

    manifest = load_manifest()
    record = manifest.contract("PointsToken")
    start = from_block if from_block is not None else int(record.get("deploy_block") or 0)
    try:
        result = statement(provider.web3, record["address"], record["abi"], start, to_block)
    except SettlementError as err:
        raise click.ClickException(str(err)) from err
    text = result.to_csv() if fmt == "csv" else json.dumps(result.to_json(), indent=2) + "\n"
    if out:
        out.write_text(text)
        click.echo(f"statement written to {out}")
    else:
        click.echo(text, nl=False)
    if result.reconciled:
        click.echo(f"reconciled: paid in - paid out = reserve movement = {result.reserve_movement} "
                   f"(blocks {result.from_block}-{result.to_block})", err=True)
    else:
        for problem in result.discrepancies:
            click.echo(f"NOT reconciled: {problem}", err=True)
        sys.exit(1)
