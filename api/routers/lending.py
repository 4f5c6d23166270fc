"""Lending: the lender's view of a certificate (`/collateral/{token_id}`,
`/loans/{loan_id}`), the loan offer board (`/offers`), and the relayed
PledgeLending actions (`/relay/loan-acceptances`, `/relay/loan-extensions`)
with the typed data their signers sign."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Path, Query, Request, status

from amphora import eip712
from api import lending
from api.chain import LENDING, STABLECOIN, contract_label, node_errors
from api.deps import ChainDep, OffersDep, OriginDep, RelayerDep, SettingsDep
from api.errors import (
    Conflict,
    InvalidRequest,
    NotDeployed,
    NotFound,
    OfferUnusable,
    ServiceUnavailable,
    UpstreamUnavailable,
    error_responses,
)
from api.routers.relay import RELAY_ERRORS, _stringified, accepted, authorization_typed_data
from api.schemas import (
    ADDRESS_PATTERN,
    BYTES32_PATTERN,
    CollateralSnapshot,
    LendingTypedData,
    LoanAcceptanceRelayRequest,
    LoanExtensionRelayRequest,
    LoanRepaymentRelayRequest,
    LoanRepaymentTypedData,
    LoanState,
    OfferList,
    OfferPost,
    PostedOffer,
    RelayAccepted,
    Uint256In,
    checksum_address,
)

router = APIRouter(tags=["lending"])
relay_router = APIRouter(prefix="/relay", tags=["relay"])

SignedQuery = Annotated[bool, Query(description="Sign the snapshot with the snapshot key (adds `signer` and "
                                    "`signature`; 503 when `AMPHORA_SNAPSHOT_SIGNING_KEY` is not set).")]
_VIEW_ERRORS = (NotFound, InvalidRequest, UpstreamUnavailable, NotDeployed)
_SIGNED_VIEW_ERRORS = (*_VIEW_ERRORS, ServiceUnavailable)
_TYPED_DATA_ERRORS = (InvalidRequest, UpstreamUnavailable, NotDeployed)

_SNAPSHOT_DOC = """

    Everything comes from one `PledgeLending.collateral` call at one block,
    named in `block_number`, `block_hash` and `block_timestamp` (the `now` of
    `seconds_to_due`, `seconds_to_grace_end` and the appraisal's `age`):
    the loan's terms and state (`open`, `repaid`, `foreclosed`), the
    certificate's lifecycle state and flag, its custodian with the lot's latest
    storage attestation and the custodian's reserve root, the lot's latest
    appraisal, the loan-to-value and the borrower's credit record.

    **Signed snapshots.** With `?signed=true` the snapshot key
    (`AMPHORA_SNAPSHOT_SIGNING_KEY`, a key of its own, never the relayer's gas
    key) signs the snapshot: `signature` is an EIP-191 `personal_sign` by `signer` of the
    canonical JSON of the response without `signature` (keys sorted at every
    level, no whitespace). A lender verifies it offline, e.g. in Python:

        body = response.json()
        signature = body.pop("signature")
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        assert Account.recover_message(encode_defunct(text=canonical), signature=signature) == body["signer"]

    and checks that `signer` is the service's published snapshot address. Anyone can
    also re-read `collateral(token_id)` at `block_hash` on an archive node."""


def get_snapshot_signer(request: Request) -> lending.SnapshotSigner:
    return cast(lending.SnapshotSigner, request.app.state.snapshot_signer)


SnapshotSignerDep = Annotated[lending.SnapshotSigner, Depends(get_snapshot_signer)]


def _maybe_signed(snapshot: CollateralSnapshot, signed: bool, signer: lending.SnapshotSigner) -> CollateralSnapshot:
    return signer.sign(snapshot) if signed else snapshot


@router.get("/collateral/{token_id}", response_model=CollateralSnapshot,
            summary="The lender's view of a certificate, at one block",
            responses=error_responses(*_SIGNED_VIEW_ERRORS))
def collateral(
    token_id: Annotated[Uint256In, Path(description="Decimal token id.")],
    chain: ChainDep, signer: SnapshotSignerDep, signed: SignedQuery = False,
) -> CollateralSnapshot:
    return _maybe_signed(lending.collateral_snapshot(chain, token_id), signed, signer)


collateral.__doc__ = """The certificate's latest loan (null if it was never pledged) and what
    stands behind it. 404 for a certificate never issued.""" + _SNAPSHOT_DOC


@router.get("/loans/{loan_id}", response_model=CollateralSnapshot,
            summary="A loan and its collateral, at one block",
            responses=error_responses(*_SIGNED_VIEW_ERRORS))
def loan(
    loan_id: Annotated[Uint256In, Path(description="Decimal loan id (`sequence << 96 | token_id`).")],
    chain: ChainDep, signer: SnapshotSignerDep, signed: SignedQuery = False,
) -> CollateralSnapshot:
    return _maybe_signed(lending.loan_snapshot(chain, loan_id), signed, signer)


loan.__doc__ = """The same snapshot as `GET /collateral/{token_id}`, for the loan's
    certificate. 404 for a loan id that never existed, and for a closed loan whose
    certificate has had a newer loan since (its terms stay in the `LoanStarted`
    event).""" + _SNAPSHOT_DOC


# ------------------------------------------------------------------ offers


@router.post("/offers", status_code=status.HTTP_201_CREATED, response_model=PostedOffer,
             summary="Post a signed loan offer to the board",
             responses=error_responses(InvalidRequest, OfferUnusable, Conflict, UpstreamUnavailable, NotDeployed))
def post_offer(body: OfferPost, chain: ChainDep, offers: OffersDep, settings: SettingsDep) -> PostedOffer:
    """A lender posts a `LoanOffer` it signed (typed data from
    `GET /relay/typed-data/loan-offer`). The board checks what it can before a
    borrower comes: the signature recovers `offer.lender` (or, for a
    contract lender, its ERC-1271 `isValidSignature` accepts it), `offer.currency` is the deployment's stablecoin,
    the amounts, duration and collateral are in the contract's range (422
    `invalid_request` otherwise), the offer has not expired, its nonce is
    neither used nor cancelled, and the lender holds the principal in the
    stablecoin and has approved at least that much to the lending contract (409
    `offer_unusable` otherwise). A lender has at most
    `AMPHORA_OFFER_MAX_OPEN_PER_LENDER` (default 20) unexpired offers on the
    board: one more is 409 `conflict`. Expired offers are deleted. Posting the
    same offer again returns it as first posted. Cancel an offer on chain
    (`cancel_offer(nonce)`): the board then stops listing it."""
    return lending.post_offer(chain, offers, body, max_open=settings.offer_max_open_per_lender)


@router.get("/offers", response_model=OfferList, summary="The offers a certificate can be pledged for now",
            responses=error_responses(*_VIEW_ERRORS))
def list_offers(
    token_id: Annotated[Uint256In, Query(description="Decimal token id of the certificate to pledge.")],
    chain: ChainDep, offers: OffersDep,
    offset: Annotated[int, Query(ge=0, le=10_000, description="Skip this many offers of the ordering (the "
                                 "previous page's `next_offset`).")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Offers per page (at most 100).")] = 20,
) -> OfferList:
    """The board's offers for this certificate or for any certificate of its
    lot, that the contract would accept at the latest block: not expired, the
    lender's nonce unused, the lender not the holder, for an offer with
    `max_ltv_bps` within that limit against a lot appraisal that is not stale,
    and the lender holding and having approved the principal (stablecoin
    balance and allowance to the lending contract). Cheapest first, one page at
    a time: `offset` and `limit` (default 20, at most 100) choose the page of
    the ordering and `next_offset` names the next one (null on the last); the
    nonces and funds of a page's offers are read in one batch of node calls, so
    a page may hold fewer than `limit` offers. Expired offers are deleted.
    `certificate_state` says whether the certificate can be pledged now. Accept one
    through `POST /relay/loan-acceptances` (or `accept_offer` directly).
    404 for a certificate never issued."""
    return lending.matching_offers(chain, offers, token_id, offset=offset, limit=limit)


# ------------------------------------------------------------------- relay

_RELAY_DOC = """

    The transaction is first simulated (`eth_estimateGas` on the pending block) with the fields the
    transaction will carry (the relayer's address, its fee fields; for a signer with code, once more
    at the exact gas limit): if it would revert the answer is **409 `would_revert`** with the
    contract's reason (`lending: ...`) and nothing is sent. Malformed input is 422; a missing
    relayer key is 503.

    202: the request is stored in the outbox (and normally already sent); poll
    `status_url` until it is `confirmed` or `failed`. Send an `Idempotency-Key`
    header to make a retry safe: the same key returns the first request."""


@relay_router.post("/loan-acceptances", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
                   summary="Relay a borrower's signed acceptance of a loan offer",
                   responses=error_responses(*RELAY_ERRORS))
def relay_loan_acceptance(body: LoanAcceptanceRelayRequest, relayer: RelayerDep,
                          settings: SettingsDep, origin: OriginDep) -> RelayAccepted:
    return accepted(relayer.relay_loan_acceptance(body, origin), settings.public_base_url)


relay_loan_acceptance.__doc__ = """Submit `accept_offer_with_signature`: the lender's
    signed offer (from `GET /offers`) and the borrower's `AcceptOffer` signature
    (typed data from `GET /relay/typed-data/loan-acceptance`). The certificate is
    pledged and the principal goes from the lender to `borrower` in one
    transaction; the borrower pays no gas. The acceptance names the offer, the
    certificate and the borrower, so a copy can only make the same loan.""" + _RELAY_DOC


@relay_router.post("/loan-extensions", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
                   summary="Relay a loan extension signed by lender and borrower",
                   responses=error_responses(*RELAY_ERRORS))
def relay_loan_extension(body: LoanExtensionRelayRequest, relayer: RelayerDep,
                         settings: SettingsDep, origin: OriginDep) -> RelayAccepted:
    return accepted(relayer.relay_loan_extension(body, origin), settings.public_base_url)


relay_loan_extension.__doc__ = """Submit `extend_loan`: both the lender and the borrower
    signed the same `LoanExtension(loanId, dueAt, repayment, deadline)` (typed
    data from `GET /relay/typed-data/loan-extension`). The due date moves later
    and the repayment amount changes; the grace period stays.""" + _RELAY_DOC


@relay_router.post("/loan-repayments", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
                   summary="Relay a repayment paid by the payer's EIP-3009 authorization (no gas)",
                   responses=error_responses(*RELAY_ERRORS))
def relay_loan_repayment(body: LoanRepaymentRelayRequest, relayer: RelayerDep,
                         settings: SettingsDep, origin: OriginDep) -> RelayAccepted:
    return accepted(relayer.relay_loan_repayment(body, origin), settings.public_base_url)


relay_loan_repayment.__doc__ = """Submit `repay_with_authorization`: the payer (usually the
    borrower; anyone may repay) signed the stablecoin's EIP-3009
    `ReceiveWithAuthorization` of the loan's repayment to the lending contract,
    with the nonce `repayment_nonce(loan_id)` (typed data from
    `GET /relay/typed-data/loan-repayment`). The lending contract takes the
    money and passes it to the lender, and the certificate unlocks for the
    borrower, in one transaction: the payer needs neither gas nor an
    allowance. If the stablecoin refuses to pay the lender (blacklisted), the
    repayment is held in the lending contract for the lender and the loan is
    repaid all the same. If the stablecoin refuses every transfer (paused, or
    the lending contract blacklisted) while the payer holds the repayment, the
    transaction succeeds without repaying: it logs `RepaymentRefused` and
    stops the loan's clock, so the lender cannot foreclose until the currency
    works again and `restart_clock` moves the due date later (the
    authorization stays unused; relay it again then). Only the lending
    contract can use the authorization, and only for this loan, once. 409
    `would_revert` also for a loan past its grace period (unless its clock
    is stopped), already closed, whose clock is already stopped, or whose
    repayment changed (an extension) since the payer signed.""" + _RELAY_DOC


def _typed(chain: ChainDep, primary_type: str, message: dict) -> LendingTypedData:
    return LendingTypedData.model_validate(_stringified(lending.lending_typed_data(chain, primary_type, message)))


@relay_router.get("/typed-data/loan-offer", response_model=LendingTypedData,
                  summary="The typed data a lender signs to offer a loan",
                  responses=error_responses(*_TYPED_DATA_ERRORS))
def loan_offer_typed_data(
    chain: ChainDep,
    lender: Annotated[str, Query(pattern=ADDRESS_PATTERN)],
    lot_id: Annotated[Uint256In, Query()],
    principal: Annotated[Uint256In, Query(description="Stablecoin units.")],
    repayment: Annotated[Uint256In, Query(description="Stablecoin units; at least `principal`.")],
    duration: Annotated[Uint256In, Query(description="Seconds to the due date.")],
    grace_period: Annotated[Uint256In, Query(description="Seconds after the due date.")],
    expiry: Annotated[Uint256In, Query(description="Unix time the offer expires.")],
    nonce: Annotated[Uint256In, Query(description="The lender's offer nonce.")],
    token_id: Annotated[Uint256In, Query(description="One certificate, or 0 for any of the lot.")] = 0,
    max_ltv_bps: Annotated[Uint256In, Query(description="0 for no loan-to-value check.")] = 0,
) -> LendingTypedData:
    """The `eth_signTypedData_v4` payload of a `LoanOffer` in PledgeLending's
    domain, in the deployment's stablecoin. Sign it and post the offer with the
    signature to `POST /offers`."""
    try:
        who = checksum_address(lender)
    except ValueError as err:
        raise InvalidRequest(f"lender: {err}") from err
    message = eip712.loan_offer_message(who, lending.stablecoin_address(chain), lot_id, token_id, principal,
                                        repayment, duration, grace_period, max_ltv_bps, expiry, nonce)
    return _typed(chain, "LoanOffer", message)


@relay_router.get("/typed-data/loan-acceptance", response_model=LendingTypedData,
                  summary="The typed data a borrower signs to accept an offer",
                  responses=error_responses(*_TYPED_DATA_ERRORS))
def loan_acceptance_typed_data(
    chain: ChainDep,
    offer_hash: Annotated[str, Query(pattern=BYTES32_PATTERN, description="The offer's `offer_hash` (from "
                                     "`GET /offers`).")],
    token_id: Annotated[Uint256In, Query(description="The certificate to pledge.")],
    borrower: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The holder, who signs.")],
    deadline: Annotated[Uint256In, Query(description="Unix time the acceptance expires.")],
) -> LendingTypedData:
    """The `eth_signTypedData_v4` payload of `AcceptOffer(offerHash, tokenId,
    borrower, deadline)` in PledgeLending's domain. Sign it as the borrower and
    post it with the offer to `POST /relay/loan-acceptances`."""
    try:
        who = checksum_address(borrower)
    except ValueError as err:
        raise InvalidRequest(f"borrower: {err}") from err
    message = eip712.accept_offer_message(bytes.fromhex(offer_hash[2:]), token_id, who, deadline)
    return _typed(chain, "AcceptOffer", message)


@relay_router.get("/typed-data/loan-extension", response_model=LendingTypedData,
                  summary="The typed data lender and borrower sign to extend a loan",
                  responses=error_responses(*_TYPED_DATA_ERRORS))
def loan_extension_typed_data(
    chain: ChainDep,
    loan_id: Annotated[Uint256In, Query()],
    due_at: Annotated[Uint256In, Query(description="The new due date (unix time).")],
    repayment: Annotated[Uint256In, Query(description="The new repayment amount.")],
    deadline: Annotated[Uint256In, Query(description="Unix time the extension expires.")],
) -> LendingTypedData:
    """The `eth_signTypedData_v4` payload of `LoanExtension(loanId, dueAt,
    repayment, deadline)` in PledgeLending's domain: the lender and the
    borrower each sign it; post both signatures to `POST /relay/loan-extensions`."""
    return _typed(chain, "LoanExtension", eip712.loan_extension_message(loan_id, due_at, repayment, deadline))


@relay_router.get("/typed-data/loan-repayment", response_model=LoanRepaymentTypedData,
                  summary="The typed data a payer signs to repay a loan without gas",
                  responses=error_responses(NotFound, *_TYPED_DATA_ERRORS))
def loan_repayment_typed_data(
    chain: ChainDep,
    loan_id: Annotated[Uint256In, Query(description="The open loan to repay.")],
    payer: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="Who pays and signs (usually the "
                                "borrower).")],
    valid_before: Annotated[Uint256In, Query(description="Unix time before which the authorization must be "
                                             "used.")],
    valid_after: Annotated[Uint256In, Query(description="Unix time after which it is valid (default 0).")] = 0,
) -> LoanRepaymentTypedData:
    """The `eth_signTypedData_v4` payload of the stablecoin's
    `ReceiveWithAuthorization` that repays `loan_id`, in the stablecoin's own
    EIP-712 domain: from `payer`, to the lending contract, the loan's current
    repayment amount, and the loan's nonce `repayment_nonce(loan_id)`. Sign it
    and post the signature to `POST /relay/loan-repayments` with the same
    `valid_after` and `valid_before`. 404 for a loan that is not open; 422 when
    `valid_before` is not after `valid_after`."""
    try:
        who = checksum_address(payer)
    except ValueError as err:
        raise InvalidRequest(f"payer: {err}") from err
    if valid_before <= valid_after:
        raise InvalidRequest("valid_before: must be after valid_after")
    contract = chain.lending_contract("repay_with_authorization")
    loan = lending.loan_snapshot(chain, loan_id).loan
    if loan is None or loan.state != LoanState.open:
        raise NotFound(f"loan {loan_id} is not open")
    with node_errors(contract_label(LENDING)):
        nonce = bytes(contract.functions.repayment_nonce(loan_id).call())
    repayment = int(loan.repayment)
    domain = chain.eip712_domain(STABLECOIN)
    data = authorization_typed_data(domain, "ReceiveWithAuthorization", who, contract.address, repayment,
                                    valid_after, valid_before, nonce)
    return LoanRepaymentTypedData.model_validate(data)
