"""The holder's signed lifecycle actions the relayer submits: one table that says,
for each action, which EIP-712 message the holder signs and which certificate
function takes it. The typed-data endpoint, the relay endpoints and the relayer
all read this table, so an action is defined once.

Every action uses the holder's sequential nonce (``nonces(holder)``, shared with
signed transfers) and a deadline, and the contract checks the signature (ECDSA,
or ERC-1271 for a contract holder) before it changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from amphora import eip712
from api.schemas import FlagRelayRequest, GiftRelayRequest, HolderActionRelayRequest, RedemptionRelayRequest


class ActionName(StrEnum):
    """The lifecycle actions a holder signs, as they appear in URLs."""

    gift = "gift"
    gift_revocation = "gift-revocation"
    redemption = "redemption"
    flag = "flag"


@dataclass(frozen=True)
class HolderAction:
    name: ActionName
    primary_type: str
    function: str
    request_model: type[HolderActionRelayRequest]
    #: The action's own message fields (beyond holder, token id, nonce, deadline)
    #: from the request, as the contract function takes them after the token id.
    extra: Callable[[Any], tuple[Any, ...]]
    #: The EIP-712 message from holder, token id, the extra fields, nonce, deadline.
    message: Callable[..., dict[str, Any]]
    summary: str

    def typed_data(self, holder: str, token_id: int, extra: tuple[Any, ...], nonce: int, deadline: int,
                   chain_id: int, contract: str, name: str, version: str) -> dict[str, Any]:
        message = self.message(holder, token_id, *extra, nonce, deadline)
        return eip712.typed_data(self.primary_type, message, chain_id, contract, name=name, version=version)

    def call_args(self, request: HolderActionRelayRequest) -> tuple[Any, ...]:
        """The arguments of ``function`` for a relay request."""
        return (request.holder, request.token_id, *self.extra(request), request.nonce, request.deadline,
                request.signature)


def _hex32(value: str) -> bytes:
    return bytes.fromhex(value[2:])


ACTIONS: dict[ActionName, HolderAction] = {
    ActionName.gift: HolderAction(
        ActionName.gift, "CreateGift", "create_gift_with_signature", GiftRelayRequest,
        lambda r: (r.claim_key, r.expiry), eip712.create_gift_message,
        "gift of certificate {token_id} by {holder}"),
    ActionName.gift_revocation: HolderAction(
        ActionName.gift_revocation, "RevokeGift", "revoke_gift_with_signature", HolderActionRelayRequest,
        lambda r: (), eip712.revoke_gift_message,
        "revocation of the gift of certificate {token_id} by {holder}"),
    ActionName.redemption: HolderAction(
        ActionName.redemption, "RequestRedemption", "request_redemption_with_signature", RedemptionRelayRequest,
        lambda r: (_hex32(r.order_hash),), eip712.request_redemption_message,
        "redemption request for certificate {token_id} by {holder}"),
    ActionName.flag: HolderAction(
        ActionName.flag, "Flag", "flag_with_signature", FlagRelayRequest,
        lambda r: (_hex32(r.reason_hash),), eip712.flag_message,
        "flag of certificate {token_id} by {holder}"),
}
