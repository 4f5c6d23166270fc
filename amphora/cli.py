"""What the Ape scripts in ``scripts/`` share: choosing the acting account and
confirming before anything is sent to a non-local network."""

from __future__ import annotations

from typing import Any

import click

from amphora.deploy import LOCAL_CHAIN_IDS
from amphora.manifest import Manifest, ManifestError


def is_local() -> bool:
    from ape import chain

    return chain.chain_id in LOCAL_CHAIN_IDS


def acting_account(account: Any, test_index: int, role: str) -> Any:
    """The ``--account`` given, or on a local node the test account kept for ``role``."""
    if account is not None:
        return account
    if not is_local():
        raise click.UsageError(f"--account is required on a non-local network (the {role})")
    from ape import accounts

    return accounts.test_accounts[test_index]


def confirm_send(what: str, skip: bool) -> None:
    """Ask before sending on a non-local network, unless ``--yes`` was given."""
    if skip or is_local():
        return
    from ape import chain

    if not click.confirm(f"{what} on chain {chain.chain_id} ({chain.provider.network.choice})?",
                         default=False):
        raise click.Abort()


def load_manifest() -> Manifest:
    from ape import chain

    from amphora.manifest import manifest_path

    try:
        return Manifest.load(manifest_path(chain.chain_id))
    except ManifestError as err:
        raise click.ClickException(str(err)) from err
