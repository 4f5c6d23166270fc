"""``ape run issue_lot LOT_FILE``: a winery issues a lot described in JSON or CSV.

Writes the bottles file for the tag printer: per bottle the token id, the tag
key to program into its tag (unless the description lists existing tag
addresses), the tag's address and Merkle proof, and its verification URL.
The file holds private keys: it is written with mode 0600.
"""

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option, skip_confirmation_option

from amphora import lots
from amphora.cli import acting_account, confirm_send, load_manifest
from amphora.deploy import certificate


@click.command(cls=ConnectedProviderCommand, short_help="Issue a lot from a JSON or CSV description")
@network_option()
@account_option(prompt=False)
@skip_confirmation_option("Do not ask before sending on a non-local network")
@click.argument("lot_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Bottles file to write (.json or .csv); default: <lot file>.bottles.json")
@click.option("--verify-base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Base of the verification URLs printed on the bottles' QR codes.")
def cli(account, skip_confirmation, lot_file, out, verify_base_url):
    issuer = acting_account(account, 1, "issuer")
    try:
        description = lots.LotDescription.from_file(lot_file)
    except lots.LotFileError as err:
        raise click.ClickException(str(err)) from err
    manifest = load_manifest()
    confirm_send(f"Issue {description.bottle_count} bottles of {description.wine} from {issuer.address}",
                 skip_confirmation)
    issued = lots.issue(certificate(manifest), issuer, description)
    out = out or lot_file.with_suffix(".bottles.json")
    lots.write_bottles(out, issued.lot_id, issued.bottles, verify_base_url, issued.metadata)
    from ape import chain

    document = lots.write_document(lots.document_path(chain.chain_id, issued.lot_id), issued.metadata)
    click.echo(f"lot {issued.lot_id}: {description.bottle_count} bottles, tag root 0x{issued.tree.root.hex()}")
    click.echo(f"tx {issued.tx_hash} ({issued.gas_used:,} gas)")
    click.echo(f"bottles file (contains tag private keys, keep it safe): {out}")
    click.echo(f"metadata document (publish it at the lot's metadata_uri; the API serves it): {document}")
