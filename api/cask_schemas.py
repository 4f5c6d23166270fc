"""Request and response bodies of the cask-shares routes (``api.routers.casks``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import (
    Address,
    Bytes32Hex,
    EcdsaSignatureHex,
    TypedDataDomain,
    TypedDataField,
    Uint256In,
    Uint256Out,
)


class CaskSummary(BaseModel):
    address: Address = Field(description="The cask's shares contract.")
    record: str = Field(description="The name the deploy manifest records it under.")
    name: str
    symbol: str


class CaskFacts(BaseModel):
    producer: str
    wine: str
    vintage: int = Field(description="Harvest year, 0 for a non-vintage wine.")
    volume_litres: Uint256Out
    expected_bottles: Uint256Out
    cellar: Address = Field(description="The custodian keeping the cask and, later, its bottles.")
    document_hash: Bytes32Hex = Field(description="keccak256 of the cask's document (like a lot's metadata hash).")
    lockup_end: Uint256Out = Field(description="Unix time until which only the issuer's shares move.")


class CaskBottling(BaseModel):
    bottled: bool
    lot_id: Uint256Out = Field(description="The certificate lot the cask issued at bottling (0 before).")
    first_token_id: Uint256Out
    shares_per_bottle: Uint256Out
    remainder_price: Uint256Out = Field(description="Stablecoin units paid per share of a remainder below a bottle.")
    bottles_issued: Uint256Out
    bottles_delivered: Uint256Out
    remainder_fund: Uint256Out
    remainder_paid: Uint256Out


class CaskBacking(BaseModel):
    whole_bottles_outstanding: Uint256Out = Field(description="Outstanding shares // shares per bottle.")
    bottles_held: Uint256Out = Field(description="Bottles of the lot the cask still holds (issued - delivered).")
    certificates_held: Uint256Out = Field(description="The certificate contract's balance of the cask.")
    remainder_fund_left: Uint256Out
    remainder_fund_needed: Uint256Out = Field(description="The most the remainders can still cost.")
    covered: bool = Field(description="Whether every whole bottle's worth of shares is backed by a held bottle.")


class CaskView(BaseModel):
    address: Address
    name: str
    symbol: str
    decimals: int
    total_supply: Uint256Out
    issuer: Address
    agent: Address = Field(description="The compliance agent.")
    paused: bool
    holder_count: Uint256Out
    max_holders: Uint256Out = Field(description="0: no limit.")
    certificate: Address
    stablecoin: Address
    facts: CaskFacts
    distributions_deposited: Uint256Out = Field(description="Stablecoin units deposited as distributions.")
    distributions_paid: Uint256Out = Field(description="Stablecoin units claimed out of them.")
    bottling: CaskBottling
    backing: CaskBacking | None = Field(description="The on-chain cover of the shares by bottles; null before "
                                        "bottling.")


class CaskHolder(BaseModel):
    cask: Address
    address: Address
    shares: Uint256Out
    eligible: bool = Field(description="Recorded by the compliance agent and the check not expired.")
    country: int = Field(description="ISO 3166-1 numeric country code recorded (0: none).")
    country_banned: bool
    eligibility_expiry: Uint256Out = Field(description="Unix time the eligibility check expires (0: none).")
    frozen: bool = Field(description="Every share frozen by the agent.")
    frozen_amount: Uint256Out = Field(description="Shares frozen by the agent; only the rest may move.")
    claimable_distribution: Uint256Out = Field(description="Stablecoin units the holder can claim now.")
    claimable_bottles: Uint256Out = Field(description="Whole bottles its unfrozen shares claim (0 before bottling).")


class TransferCheck(BaseModel):
    cask: Address
    sender: Address = Field(serialization_alias="from")
    to: Address
    amount: Uint256Out
    allowed: bool = Field(description="What the contract's `can_transfer` answers now.")
    reason: str | None = Field(description="The revert reason `transfer` would give (the contract's own words).")
    explanation: str = Field(description="The answer in plain words, for a holder.")


class BottleClaimRelayRequest(BaseModel):
    """A cask holder's signed EIP-712 `ClaimBottles`, for the relayer to submit
    to the cask's `claim_with_authorization`."""

    model_config = ConfigDict(extra="forbid")

    holder: Address = Field(description="The holder who signed; the bottles and the remainder go to them.")
    bottles: Uint256In = Field(description="Bottles to claim (at most 50 in one claim).")
    remainder: bool = Field(description="Also burn the shares left below one bottle for stablecoin.")
    valid_after: Uint256In = Field(description="Unix time; valid only strictly after it (0: at once).")
    valid_before: Uint256In = Field(description="Unix time; valid only strictly before it.")
    nonce: Bytes32Hex = Field(description="A unique 32-byte nonce, from the same bitmap as the cask's EIP-3009 "
                              "authorizations.")
    signature: EcdsaSignatureHex = Field(description="The EIP-712 signature as 0x hex, 65 bytes `r || s || v`.")


class DistributionClaimRelayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder: Address = Field(description="Whose distributions to claim; the stablecoin goes to them only.")


class CustodialShareTransfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Address = Field(description="The recipient, an eligible investor of the cask.")
    value: Uint256In = Field(description="Shares in the smallest unit.")


class CustodialBottleClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bottles: Uint256In = Field(description="Bottles to claim (at most 50 in one claim).")
    remainder: bool = Field(default=False, description="Also burn the shares left below one bottle for "
                            "stablecoin at the declared price.")


class CustodialDistributionClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBottlesMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    holder: Address
    bottles: Uint256Out
    remainder: bool
    valid_after: Uint256Out = Field(alias="validAfter")
    valid_before: Uint256Out = Field(alias="validBefore")
    nonce: Bytes32Hex = Field(description="The 32-byte nonce: the one given, or an unused one the API picked in a "
                              "bitmap word the holder already uses.")


class ClaimBottlesTypedData(BaseModel):
    """An `eth_signTypedData_v4` payload for a cask's `ClaimBottles`: pass it
    unchanged to any EIP-712 signer."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[TypedDataField]]
    primary_type: Literal["ClaimBottles"] = Field(alias="primaryType")
    domain: TypedDataDomain
    message: ClaimBottlesMessage
