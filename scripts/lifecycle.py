"""``ape run lifecycle``: what custodians, issuers and the admin do in a
certificate's life. Holders act through the API's relay endpoints instead.

    ape run lifecycle confirm-redemption TOKEN_ID            # custodian: shipped, burns it
    ape run lifecycle reject-redemption TOKEN_ID "reason"    # custodian: unlocks it
    ape run lifecycle attest LOT_ID report.pdf --uri URI     # custodian: storage attestation
    ape run lifecycle reserve-root holdings.txt --uri URI    # custodian: proof-of-reserve root
    ape run lifecycle move-custody LOT_ID 0xCUSTODIAN        # admin: the lot changed cellars
    ape run lifecycle clear-flag TOKEN_ID                    # issuer: lost/stolen flag cleared

On a local node each command acts as the demo's test account for its role;
elsewhere pass ``--account``. Each asks before sending on a non-local network
(``--yes`` skips). Reasons and documents go on chain only as keccak256 hashes.
"""

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option, skip_confirmation_option
from eth_utils import keccak

from amphora import custody, deploy
from amphora.cli import acting_account, confirm_send, load_manifest
from amphora.merkle import ReserveTree

#: The local test account kept for each role (as in the demo and the tests).
ADMIN, ISSUER, CUSTODIAN = 0, 1, 2


@click.group(short_help="Custodian, issuer and admin steps of a certificate's life")
def cli():
    pass


def _options(command):
    for option in (skip_confirmation_option("Do not ask before sending on a non-local network"),
                   account_option(prompt=False), network_option()):
        command = option(command)
    return cli.command(cls=ConnectedProviderCommand)(command)


@_options
@click.argument("token_id", type=int)
def confirm_redemption(account, skip_confirmation, token_id):
    """Custodian: the bottle has shipped. Burns the certificate; it stays on
    record as redeemed, with the date and your address."""
    custodian = acting_account(account, CUSTODIAN, "custodian")
    cert = deploy.certificate(load_manifest())
    confirm_send(f"confirm redemption of certificate {token_id}", skip_confirmation)
    cert.confirm_redemption(token_id, sender=custodian)
    click.echo(f"certificate {token_id}: redeemed")


@_options
@click.argument("token_id", type=int)
@click.argument("reason")
def reject_redemption(account, skip_confirmation, token_id, reason):
    """Custodian: refuse a redemption request; the certificate unlocks. REASON
    goes on chain as its keccak256 (keep the text for the holder)."""
    custodian = acting_account(account, CUSTODIAN, "custodian")
    cert = deploy.certificate(load_manifest())
    reason_hash = keccak(text=reason)
    confirm_send(f"reject redemption of certificate {token_id}", skip_confirmation)
    cert.reject_redemption(token_id, reason_hash, sender=custodian)
    click.echo(f"certificate {token_id}: redemption rejected (reason hash 0x{reason_hash.hex()})")


@_options
@click.argument("lot_id", type=int)
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--uri", required=True, help="Where anyone can fetch DOCUMENT (it is hashed, not uploaded).")
def attest(account, skip_confirmation, lot_id, document, uri):
    """Custodian: attest how a lot is stored (conditions, inspection) by the
    keccak256 of DOCUMENT and the URI where it is published."""
    custodian = acting_account(account, CUSTODIAN, "custodian")
    registry = deploy.custody_registry(load_manifest())
    confirm_send(f"attest storage of lot {lot_id}", skip_confirmation)
    document_hash = custody.attest_storage(registry, custodian, lot_id, document.read_bytes(), uri)
    click.echo(f"lot {lot_id}: storage attested (document hash 0x{document_hash.hex()})")


@_options
@click.argument("holdings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--uri", required=True, help="Where the tree (the token id list) is published.")
@click.option("--proofs-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write each token id's Merkle proof here (JSON), for verifiers.")
def reserve_root(account, skip_confirmation, holdings, uri, proofs_out):
    """Custodian: post a proof-of-reserve root over the token ids in HOLDINGS
    (one decimal token id per line), the bottles you hold now."""
    custodian = acting_account(account, CUSTODIAN, "custodian")
    registry = deploy.custody_registry(load_manifest())
    try:
        tree = ReserveTree.build(custody.read_holdings(holdings))
    except ValueError as err:
        raise click.ClickException(f"{holdings}: {err}") from err
    count = len(tree.token_ids)
    confirm_send(f"post a reserve root of {count} bottles", skip_confirmation)
    custody.post_reserve_root(registry, custodian, tree, uri)
    if proofs_out:
        custody.write_reserve_document(proofs_out, tree)
    click.echo(f"reserve root 0x{tree.root.hex()} posted for {count} bottles")


@_options
@click.argument("lot_id", type=int)
@click.argument("custodian_address")
def move_custody(account, skip_confirmation, lot_id, custodian_address):
    """Admin: record that a lot's bottles moved to another registered custodian."""
    admin = acting_account(account, ADMIN, "admin")
    cert = deploy.certificate(load_manifest())
    confirm_send(f"move lot {lot_id} to custodian {custodian_address}", skip_confirmation)
    cert.move_custody(lot_id, custodian_address, sender=admin)
    click.echo(f"lot {lot_id}: now with {custodian_address}")


@_options
@click.argument("token_id", type=int)
def clear_flag(account, skip_confirmation, token_id):
    """Issuer: clear a lost or stolen flag after your own checks; the
    certificate unlocks."""
    issuer = acting_account(account, ISSUER, "issuer")
    cert = deploy.certificate(load_manifest())
    confirm_send(f"clear the flag of certificate {token_id}", skip_confirmation)
    cert.clear_flag(token_id, sender=issuer)
    click.echo(f"certificate {token_id}: flag cleared")
