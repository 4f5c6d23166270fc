"""``ape run deploy``: deploy Amphora to the selected network and write the manifest.

Re-running reuses every contract the manifest records that still has code on
the chain, so the command is safe to repeat.
"""

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option, skip_confirmation_option

from amphora.cli import acting_account, confirm_send
from amphora.deploy import CertificateSettings, TokenSettings, deploy_all


@click.command(cls=ConnectedProviderCommand, short_help="Deploy Amphora and write the manifest")
@network_option()
@account_option(prompt=False)
@click.option("--base-uri", default=CertificateSettings.base_uri, show_default=True,
              help="Prefix of every certificate's tokenURI (the API's /metadata/ URL).")
@click.option("--stablecoin", default=None, metavar="ADDRESS",
              help="The existing stablecoin points are pegged to. Required on a non-local network; "
                   "on a local one Amphora deploys its ReferenceStablecoin.")
@skip_confirmation_option("Do not ask before sending on a non-local network")
def cli(account, base_uri, stablecoin, skip_confirmation):
    deployer = acting_account(account, 0, "deployer and first admin")
    confirm_send(f"Deploy Amphora from {deployer.address}", skip_confirmation)
    try:
        manifest = deploy_all(deployer, certificate=CertificateSettings(base_uri=base_uri),
                              tokens=TokenSettings(stablecoin=stablecoin))
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    for name, record in manifest.contracts.items():
        click.echo(f"{name:<20} {record['address']}  (block {record['deploy_block']})")
    click.echo(f"manifest: {manifest.path}")
