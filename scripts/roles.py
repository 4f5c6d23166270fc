"""``ape run roles``: the admin grants and revokes issuers (wineries) and custodians.

    ape run roles grant-issuer 0xWINERY "Château Example" --network ...
    ape run roles revoke-custodian 0xCELLAR --network ...
"""

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option, skip_confirmation_option

from amphora import deploy
from amphora.cli import acting_account, confirm_send, load_manifest


@click.group(short_help="Grant or revoke issuer and custodian roles")
def cli():
    pass


def _command(name, action, with_name):
    @cli.command(name=name, cls=ConnectedProviderCommand)
    @network_option()
    @account_option(prompt=False)
    @skip_confirmation_option("Do not ask before sending on a non-local network")
    @click.argument("address")
    @click.argument("party_name", required=with_name, default=None)
    def command(account, skip_confirmation, address, party_name):
        admin = acting_account(account, 0, "admin")
        manifest = load_manifest()
        confirm_send(f"{name} {address}", skip_confirmation)
        if with_name:
            action(manifest, admin, address, party_name)
        else:
            action(manifest, admin, address)
        click.echo(f"{name}: {address} done")

    return command


_command("grant-issuer", deploy.grant_issuer, True)
_command("revoke-issuer", deploy.revoke_issuer, False)
_command("grant-custodian", deploy.grant_custodian, True)
_command("revoke-custodian", deploy.revoke_custodian, False)
