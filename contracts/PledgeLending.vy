# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
"""
@title Amphora Pledge Lending
@custom:contract-name PledgeLending
@license GNU Affero General Public License v3.0 only
@notice Stablecoin loans against wine certificates. A lender signs an
        offer (EIP-712, never stored until used): principal in the
        configured stablecoin, a fixed repayment amount, a duration and a
        grace period, an expiry, a nonce, and the collateral: one
        certificate, or any certificate of a lot, with an optional
        maximum loan-to-value against the lot's latest appraisal. The
        holder accepts it, directly or through the relayer on a signed
        acceptance: the certificate becomes `pledged` in `WineCertificate`
        (still the holder's, but it cannot move, be gifted, flagged or
        redeemed) and the principal goes from the lender to the borrower
        in the same transaction. Anyone may repay a loan in full until
        its due date plus grace: the repayment goes to the lender (or is
        held here for it, if the stablecoin refuses to pay the lender) and
        the certificate unlocks for the borrower. After the grace period
        the lender forecloses and receives the certificate, unlocked;
        `OPEN_FORECLOSURE_DELAY` later anyone may do it for the lender. A
        borrower never loses the certificate because the currency refused
        its repayment: a repayment refused by a paused stablecoin, or one
        that blacklisted this contract, stops the loan's clock until
        `restart_clock`.
        Appraisers post lots' values per bottle; every borrower has a
        public credit record; `collateral` gives a lender everything about
        a pledged bottle in one call.
@dev Repayment rule: the offer states the repayment amount itself (not a
     rate), the same whenever the loan is repaid before the grace period
     ends: no rounding on chain, and the borrower signs exactly what it
     will owe. A lender quoting a rate turns it into an amount off chain
     (`amphora.eip712.repayment_for_rate`: principal × (1 + APR × duration
     / 365 days), rounded up).
     Storage, chosen for gas: a loan is three words keyed by its token id
     (a certificate has at most one open loan): lender | due_at << 160 |
     grace << 200 | state << 232 | sequence << 240; principal | repayment
     << 128; borrower | started_at << 160. A loan id
     is sequence << 96 | token_id, so a token's next loan gets a new id;
     a closed loan's record stays readable until the token's next loan
     (the events keep every loan). Offer nonces are a bitmap per lender
     (256 to a word) plus a floor below which all are cancelled. A credit
     record is two words: loans | on time << 32 | late << 64 | defaulted
     << 96 | principal borrowed << 128, and principal repaid. An appraisal
     is one word: value per bottle | appraised_at << 208.
     Stablecoin normally moves straight between the parties with
     `transferFrom`; the contract holds only repayments the stablecoin
     refused to pay to their lender (`repayments_held`, summed in
     `total_repayments_held`) until the lender withdraws them. The state
     byte's top bit marks a loan whose clock is stopped, and the time it
     stopped is kept at bit 200 of the borrower word.
@custom:security Emergency: the admin calls `pause` (shutdown mode),
                 which stops new loans (`accept_offer`, its signed form).
                 Repay, foreclose, extensions, cancellations and
                 appraisals keep working, so no loan is frozen half way.
                 The certificate's own `pause` also stops pledges and
                 foreclosures (they move or lock a token) but not
                 repayments. Every state-changing function is
                 non-reentrant; external calls (the certificate, then the
                 stablecoin) come after the state they depend on is
                 written, except in repayments, which call the stablecoin
                 first to learn whether it refused (no re-entry is
                 possible). The admin cannot move funds or certificates:
                 it appoints appraisers, sets the appraisal age and
                 pauses.
"""


from ethereum.ercs import IERC20

from snekmate.auth import ownable
initializes: ownable

from snekmate.auth import ownable_2step
initializes: ownable_2step[ownable := ownable]

from snekmate.utils import pausable
initializes: pausable

from snekmate.utils import eip712_domain_separator
initializes: eip712_domain_separator

from snekmate.utils import signature_checker

from .modules import vrs_signature


# @dev `renounce_ownership` is left out on purpose: without an admin no
# appraiser could be appointed or removed and the contract never shut down.
exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
    eip712_domain_separator.eip712Domain,
)


# @dev The certificate's one-call record, as `WineCertificate.certificate`
# returns it (field order and types must match).
struct Certificate:
    exists: bool
    token_id: uint256
    lot_id: uint256
    serial: uint256
    owner: address
    state: uint8
    locked: bool
    issuer: address
    issuer_name: String[64]
    issuer_active: bool
    custodian: address
    custodian_name: String[64]
    custodian_active: bool
    bottle_count: uint256
    vintage: uint256
    volume_ml: uint256
    bottling_date: uint256
    issued_at: uint256
    metadata_hash: bytes32
    tag_root: bytes32
    flag_reason_hash: bytes32
    flagged_by_issuer: bool
    gift_claim_key: address
    gift_expiry: uint256
    redemption_order_hash: bytes32
    redeemed_at: uint256
    redeemed_by: address


# @dev As `CustodyRegistry.custody` returns it.
struct Custody:
    custodian: address
    storage_document_hash: bytes32
    storage_attested_at: uint256
    storage_attested_by: address
    reserve_root: bytes32
    reserve_posted_at: uint256
    reserve_bottle_count: uint256


interface IWineCertificate:
    def pledge(token_id: uint256, holder: address): nonpayable
    def release(token_id: uint256, receiver: address) -> address: nonpayable
    def ownerOf(token_id: uint256) -> address: view
    def custodian_of(token_id: uint256) -> address: view
    def certificate(token_id: uint256) -> Certificate: view


interface ICustodyRegistry:
    def custody(token_id: uint256) -> Custody: view


interface IEIP3009:
    def receiveWithAuthorization(
        _from: address,
        to: address,
        amount: uint256,
        validAfter: uint256,
        validBefore: uint256,
        nonce: bytes32,
        v: uint8,
        r: bytes32,
        s: bytes32,
    ): nonpayable


# @notice A lender's offer, signed as the EIP-712 `LoanOffer`.
struct LoanOffer:
    # The lender, who signs and pays the principal (it approves this
    # contract to spend it).
    lender: address
    # Must be the configured stablecoin (`STABLECOIN`).
    currency: address
    # The collateral: a certificate of lot `lot_id`; `token_id` names one
    # certificate, or zero for any certificate of the lot.
    lot_id: uint256
    token_id: uint256
    principal: uint256
    # The amount that repays the loan, whenever it is repaid; at least the
    # principal.
    repayment: uint256
    # Seconds from acceptance to the due date, and after it until the
    # lender may foreclose.
    duration: uint256
    grace_period: uint256
    # Most principal / appraised value per bottle, in basis points; zero
    # for no check. Non-zero requires a fresh appraisal of the lot.
    max_ltv_bps: uint256
    # Unix time after which the offer cannot be accepted.
    expiry: uint256
    nonce: uint256


# @notice A loan as stored, with what follows from it.
struct Loan:
    loan_id: uint256
    token_id: uint256
    lot_id: uint256
    state: uint8
    lender: address
    borrower: address
    principal: uint256
    repayment: uint256
    started_at: uint256
    due_at: uint256
    grace_period: uint256
    grace_ends_at: uint256


# @notice An account's record as a borrower, kept by this contract.
struct CreditRecord:
    loans_taken: uint256
    repaid_on_time: uint256
    # Repaid after the due date, within the grace period.
    repaid_late: uint256
    defaulted: uint256
    # Open = taken - on time - late - defaulted.
    open_loans: uint256
    principal_borrowed: uint256
    principal_repaid: uint256


struct Appraisal:
    value_per_bottle: uint256
    appraised_at: uint256
    # Seconds since `appraised_at`; zero without an appraisal.
    age: uint256
    # Older than `max_appraisal_age`, or none at all.
    stale: bool


# @notice What a lender checks before and during a loan, in one call.
struct Collateral:
    # The token's latest loan (empty fields if it was never pledged here).
    loan: Loan
    # Seconds until the due date and until the grace period ends; zero
    # once passed (or without an open loan).
    seconds_to_due: uint256
    seconds_to_grace_end: uint256
    # The certificate (WineCertificate), its custody (CustodyRegistry).
    certificate_exists: bool
    certificate_state: uint8
    certificate_owner: address
    flagged: bool
    flag_reason_hash: bytes32
    custodian: address
    custodian_active: bool
    storage_document_hash: bytes32
    storage_attested_at: uint256
    storage_attested_by: address
    reserve_root: bytes32
    reserve_posted_at: uint256
    # The lot's latest appraisal, and principal / value in basis points
    # (zero without an appraisal or a loan).
    appraisal: Appraisal
    ltv_bps: uint256
    # The borrower's credit record.
    borrower_credit: CreditRecord


event LoanStarted:
    loan_id: indexed(uint256)
    lender: indexed(address)
    borrower: indexed(address)
    token_id: uint256
    principal: uint256
    repayment: uint256
    due_at: uint256
    grace_period: uint256
    offer_hash: bytes32


event LoanRepaid:
    loan_id: indexed(uint256)
    borrower: indexed(address)
    payer: indexed(address)
    repayment: uint256
    late: bool


event LoanForeclosed:
    loan_id: indexed(uint256)
    lender: indexed(address)
    borrower: indexed(address)


event RepaymentHeld:
    loan_id: indexed(uint256)
    lender: indexed(address)
    amount: uint256


event RepaymentsWithdrawn:
    lender: indexed(address)
    amount: uint256


event RepaymentRefused:
    loan_id: indexed(uint256)
    payer: indexed(address)


event LoanClockRestarted:
    loan_id: indexed(uint256)
    due_at: uint256
    stopped_for: uint256


event LoanExtended:
    loan_id: indexed(uint256)
    due_at: uint256
    repayment: uint256


event OfferCancelled:
    lender: indexed(address)
    nonce: uint256


event OffersCancelledBelow:
    lender: indexed(address)
    nonce: uint256


event AppraisalPosted:
    lot_id: indexed(uint256)
    appraiser: indexed(address)
    value_per_bottle: uint256
    appraised_at: uint256


event AppraiserSet:
    account: indexed(address)
    allowed: bool


event MaxAppraisalAgeSet:
    max_appraisal_age: uint256


# @dev Loan states. `LOAN_NONE` is zero: a token never pledged here.
LOAN_NONE: public(constant(uint8)) = 0
LOAN_OPEN: public(constant(uint8)) = 1
LOAN_REPAID: public(constant(uint8)) = 2
LOAN_FORECLOSED: public(constant(uint8)) = 3

LOAN_OFFER_TYPEHASH: public(constant(bytes32)) = keccak256(
    "LoanOffer(address lender,address currency,uint256 lotId,uint256 tokenId,uint256 principal,uint256 repayment,uint256 duration,uint256 gracePeriod,uint256 maxLtvBps,uint256 expiry,uint256 nonce)"
)
# @dev Signed by the borrower for the relayer; `offerHash` is the offer's
# EIP-712 digest (what the lender signed).
ACCEPT_OFFER_TYPEHASH: public(constant(bytes32)) = keccak256(
    "AcceptOffer(bytes32 offerHash,uint256 tokenId,address borrower,uint256 deadline)"
)
# @dev Signed by both the lender and the borrower.
LOAN_EXTENSION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "LoanExtension(uint256 loanId,uint256 dueAt,uint256 repayment,uint256 deadline)"
)

BPS: public(constant(uint256)) = 10_000
# @dev As in the certificate: token_id = lot_id << SERIAL_BITS | serial.
SERIAL_BITS: constant(uint256) = 32
_ADDRESS_MASK: constant(uint256) = (1 << 160) - 1
_U32: constant(uint256) = (1 << 32) - 1
_U40: constant(uint256) = (1 << 40) - 1
_U64: constant(uint256) = (1 << 64) - 1
_U96: constant(uint256) = (1 << 96) - 1
_U128: constant(uint256) = (1 << 128) - 1
_U208: constant(uint256) = (1 << 208) - 1
_U200: constant(uint256) = (1 << 200) - 1
# @dev The terms word's state byte: the loan state in its low bits, and its
# top bit set while the loan's clock is stopped (a refused repayment).
_STATE_MASK: constant(uint256) = 255 << 232
_STATE_BITS: constant(uint256) = 127
_CLOCK_STOPPED: constant(uint256) = 1 << 239

# @notice Seconds after a loan's grace period ends from which anyone, not
#         only the lender, may foreclose it (the certificate still goes to
#         the lender): 30 days.
OPEN_FORECLOSURE_DELAY: public(constant(uint256)) = 30 * 86_400
# @notice Seconds the borrower has at least, after `restart_clock`, before
#         its loan's grace period ends: 3 days.
RESTART_WINDOW: public(constant(uint256)) = 3 * 86_400


# @notice The certificate whose holders pledge here.
CERTIFICATE: public(immutable(IWineCertificate))
# @notice The custodians' registry the collateral view reads.
REGISTRY: public(immutable(ICustodyRegistry))
# @notice The one currency loans are made and repaid in.
STABLECOIN: public(immutable(IERC20))

# @notice How old (seconds) a lot's appraisal may be for an offer with a
#         maximum loan-to-value.
max_appraisal_age: public(uint256)
# @notice Whether an account may post appraisals.
is_appraiser: public(HashMap[address, bool])
# @notice Offers of a lender with a nonce below this are cancelled.
nonce_floor: public(HashMap[address, uint256])

# @notice Repayments held here for each lender because the stablecoin
#         refused to pay the lender at repayment time; `withdraw_repayments`.
repayments_held: public(HashMap[address, uint256])
# @notice The sum of `repayments_held`: the stablecoin this contract holds
#         for lenders (anything above it was sent here by mistake).
total_repayments_held: public(uint256)

# @dev lender => nonce >> 8 => bitmap of used or cancelled nonces
_nonce_bits: HashMap[address, HashMap[uint256, uint256]]
# @dev token_id => lender | due_at << 160 | grace << 200 | state << 232 | seq << 240
_terms: HashMap[uint256, uint256]
# @dev token_id => principal | repayment << 128
_money: HashMap[uint256, uint256]
# @dev token_id => borrower | started_at << 160 | clock_stopped_at << 200
_party: HashMap[uint256, uint256]
# @dev account => loans | on_time << 32 | late << 64 | defaulted << 96 | borrowed << 128
_credit: HashMap[address, uint256]
# @dev account => principal repaid
_credit_repaid: HashMap[address, uint256]
# @dev lot_id => value per bottle | appraised_at << 208
_appraisals: HashMap[uint256, uint256]


@deploy
def __init__(
    certificate_: address,
    registry_: address,
    stablecoin_: address,
    max_appraisal_age_: uint256,
    eip712_name_: String[50],
    eip712_version_: String[20],
):
    """
    @notice The deployer becomes the admin. The certificate's admin must
            then name this contract with `WineCertificate.set_lending`.
    @param certificate_ The WineCertificate whose certificates are pledged.
    @param registry_ The CustodyRegistry beside it.
    @param stablecoin_ The ERC-20 loans are made and repaid in.
    @param max_appraisal_age_ Seconds an appraisal stays fresh.
    @param eip712_name_ The EIP-712 domain name offers are signed in.
    @param eip712_version_ The EIP-712 domain version.
    """
    assert certificate_.is_contract and registry_.is_contract and stablecoin_.is_contract, (
        "lending: constructor argument is not a contract"
    )
    ownable.__init__()
    ownable_2step.__init__()
    pausable.__init__()
    eip712_domain_separator.__init__(eip712_name_, eip712_version_)
    CERTIFICATE = IWineCertificate(certificate_)
    REGISTRY = ICustodyRegistry(registry_)
    STABLECOIN = IERC20(stablecoin_)
    self.max_appraisal_age = max_appraisal_age_


# ------------------------------------------------------------------ loans


@external
def accept_offer(offer: LoanOffer, lender_signature: Bytes[65], token_id: uint256) -> uint256:
    """
    @notice Holder: accept a lender's signed offer, pledging certificate
            `token_id`. The certificate is pledged and the principal moves
            from the lender to the caller in this transaction.
    @param offer The offer as the lender signed it.
    @param lender_signature The lender's EIP-712 signature of `offer`
           (ECDSA, or ERC-1271 for a contract lender).
    @param token_id The certificate pledged: the offer's, or for a
           lot-wide offer any certificate of its lot.
    @return uint256 The loan id.
    @custom:security Replay: the offer's nonce is consumed (one loan per
                     offer, lot-wide ones included); the EIP-712 domain
                     binds chain and contract; high-s ECDSA signatures are
                     refused, so a signature has one form. Stopped in
                     shutdown mode.
    """
    return self._accept(offer, lender_signature, token_id, msg.sender)


@external
def accept_offer_with_signature(
    offer: LoanOffer,
    lender_signature: Bytes[65],
    token_id: uint256,
    borrower: address,
    deadline: uint256,
    borrower_signature: Bytes[65],
) -> uint256:
    """
    @notice `accept_offer` on the borrower's EIP-712 signature of
            `AcceptOffer(bytes32 offerHash,uint256 tokenId,address
            borrower,uint256 deadline)`; anyone (the relayer) may submit
            it, the principal goes to `borrower`.
    @param offer The offer as the lender signed it.
    @param lender_signature The lender's signature of `offer`.
    @param token_id The certificate pledged.
    @param borrower The certificate's holder, who signed the acceptance.
    @param deadline Unix time after which the acceptance is refused.
    @param borrower_signature The borrower's signature.
    @return uint256 The loan id.
    @custom:security Front-running: the acceptance names the offer (its
                     digest), the certificate and the borrower, so a copy
                     can only make the same loan to the same borrower.
                     Replay: it works once, since the offer's nonce is
                     consumed.
    """
    assert block.timestamp <= deadline, "lending: acceptance expired"
    offer_hash: bytes32 = self._offer_hash(offer)
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(ACCEPT_OFFER_TYPEHASH, offer_hash, token_id, borrower, deadline))
    )
    assert borrower != empty(address) and self._signed_by(
        borrower, digest, borrower_signature
    ), "lending: invalid borrower signature"
    return self._accept(offer, lender_signature, token_id, borrower)


@external
def repay(loan_id: uint256) -> bool:
    """
    @notice Repay an open loan in full: the offer's repayment amount goes
            from the caller to the lender and the certificate unlocks for
            the borrower. Anyone may repay on the borrower's behalf (a
            relayer, a friend); the certificate never goes to the payer.
            Allowed until the due date plus grace period (at that second
            included); after the due date it counts as repaid late.
            Works in shutdown mode and while the certificate is paused.
            If the stablecoin refuses to pay the lender (the lender is
            blacklisted) the repayment is taken into this contract and
            held for the lender (`repayments_held`, `withdraw_repayments`):
            the loan is repaid all the same. If the stablecoin refuses every
            movement (it is paused, or it blacklisted this contract) while
            the caller holds the repayment and has approved it, nothing
            moves, `RepaymentRefused` is logged and the loan's clock stops:
            it cannot be foreclosed until `restart_clock`, and can be repaid
            at any time meanwhile.
    @return bool True if the loan is repaid; False if the currency refused
            the repayment and the loan's clock stopped.
    @custom:security The payer gains nothing but the borrower's thanks:
                     the certificate and the credit record are the
                     borrower's. Re-entrancy: every entry point is
                     non-reentrant (the stablecoin is called before the
                     loan is closed, the certificate after). A refusal
                     stops the clock only if the currency refuses this
                     contract a zero-value transfer to itself (`paused` or
                     this contract blacklisted) and the payer could pay, so
                     a payer without funds or a working currency cannot
                     stop it; a second refusal while stopped reverts.
    """
    terms: uint256 = self._terms[loan_id & _U96]
    assert loan_id >> 96 == terms >> 240 and (terms >> 232) & _STATE_BITS == convert(LOAN_OPEN, uint256), (
        "lending: loan is not open"
    )
    assert terms & _CLOCK_STOPPED != 0 or block.timestamp <= ((terms >> 160) & _U40) + ((terms >> 200) & _U32), (
        "lending: loan is past its grace period"
    )
    lender: address = convert(terms & _ADDRESS_MASK, address)
    money: uint256 = self._money[loan_id & _U96]
    repayment: uint256 = money >> 128
    # Straight to the lender (inline: the common path, kept cheap).
    paid: bool = False
    response: Bytes[32] = b""
    paid, response = raw_call(
        STABLECOIN.address,
        abi_encode(msg.sender, lender, repayment, method_id=method_id("transferFrom(address,address,uint256)")),
        max_outsize=32,
        revert_on_failure=False,
    )
    if not paid or (len(response) != 0 and not convert(response, bool)):
        if self._try_transfer_from(msg.sender, self, repayment):
            self._hold(loan_id, lender, repayment)
        elif self._currency_halted() and self._can_pay(msg.sender, repayment, True):
            self._stop_clock(loan_id, terms, msg.sender)
            return False
        else:
            # Not the currency's doing: fail with the stablecoin's own reason.
            assert extcall STABLECOIN.transferFrom(msg.sender, lender, repayment, default_return_value=True), (
                "lending: repayment transfer failed"
            )
            raise "lending: repayment transfer failed"
    # `_close_repaid`, inline on the common path (gas).
    token_id: uint256 = loan_id & _U96
    due_at: uint256 = (terms >> 160) & _U40
    self._terms[token_id] = (terms & ~_STATE_MASK) | (convert(LOAN_REPAID, uint256) << 232)
    late: bool = block.timestamp > due_at
    if terms & _CLOCK_STOPPED != 0:
        late = self._party[token_id] >> 200 > due_at
    borrower: address = extcall CERTIFICATE.release(token_id, empty(address))
    if late:
        self._credit[borrower] += 1 << 64
    else:
        self._credit[borrower] += 1 << 32
    self._credit_repaid[borrower] += money & _U128
    log LoanRepaid(loan_id=loan_id, borrower=borrower, payer=msg.sender, repayment=repayment, late=late)
    return True


@external
def repay_with_authorization(
    loan_id: uint256, payer: address, valid_after: uint256, valid_before: uint256, v: uint8, r: bytes32, s: bytes32
) -> bool:
    """
    @notice `repay` with the payer's EIP-3009 `ReceiveWithAuthorization`
            of the stablecoin instead of an allowance, so a borrower
            without gas repays through the relayer. The payer signs, in
            the stablecoin's domain: from `payer`, to this contract, value
            the loan's repayment, the validity window, and the nonce
            `repayment_nonce(loan_id)`. This contract receives the money
            and passes it to the lender in the same transaction, or holds
            it for the lender if the stablecoin refuses to pay the lender.
    @dev Same rules as `repay` (anyone's money, the borrower's
         certificate and credit record; a refusal by a halted currency
         while `payer` holds the repayment stops the clock and returns
         False).
    @return bool True if the loan is repaid; False if the currency refused
            the repayment and the loan's clock stopped.
    @custom:security Front-running: `receiveWithAuthorization` only lets
                     its payee (this contract) submit the authorization,
                     so nobody can spend it on a plain transfer that
                     leaves the loan open. Replay and misuse: the nonce is
                     bound to this contract and this loan id, so one
                     authorization repays one loan once; the value must
                     be the loan's current repayment (after an extension
                     the payer signs the new amount, same nonce).
                     Re-entrancy: every entry point is non-reentrant.
                     While the currency is halted anyone may stop a loan's
                     clock this way (the authorization cannot be checked
                     then): that is what the clock is for.
    """
    terms: uint256 = self._repayable_terms(loan_id)
    lender: address = convert(terms & _ADDRESS_MASK, address)
    money: uint256 = self._money[loan_id & _U96]
    repayment: uint256 = money >> 128
    nonce: bytes32 = self._repayment_nonce(loan_id)
    received: bool = raw_call(
        STABLECOIN.address,
        abi_encode(
            payer,
            self,
            repayment,
            valid_after,
            valid_before,
            nonce,
            v,
            r,
            s,
            method_id=method_id(
                "receiveWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
            ),
        ),
        revert_on_failure=False,
    )
    if not received:
        if self._currency_halted() and self._can_pay(payer, repayment, False):
            self._stop_clock(loan_id, terms, payer)
            return False
        # Not the currency's doing: fail with the stablecoin's own reason.
        extcall IEIP3009(STABLECOIN.address).receiveWithAuthorization(
            payer, self, repayment, valid_after, valid_before, nonce, v, r, s
        )
        raise "lending: repayment transfer failed"
    if not self._try_transfer(lender, repayment):
        self._hold(loan_id, lender, repayment)
    self._close_repaid(loan_id, terms, money, payer)
    return True


@external
@view
def repayment_nonce(loan_id: uint256) -> bytes32:
    """
    @notice The EIP-3009 nonce a payer signs to repay `loan_id` with
            `repay_with_authorization`: keccak256(abi.encode(this
            contract, loan_id)).
    """
    return self._repayment_nonce(loan_id)


@external
def withdraw_repayments() -> uint256:
    """
    @notice Lender: take the repayments held for the caller (those the
            stablecoin refused to pay it at repayment time, see `repay`).
            Everything held is sent to the caller, and only to the caller:
            a blacklisted lender withdraws once the stablecoin lets it
            receive again. Works in shutdown mode.
    @return uint256 The stablecoin sent.
    @custom:security Privilege: each lender withdraws only its own
                     balance; the admin cannot touch it. The balance is
                     cleared before the transfer; a refused transfer
                     reverts and leaves it held.
    """
    amount: uint256 = self.repayments_held[msg.sender]
    assert amount != 0, "lending: no repayments held for the caller"
    self.repayments_held[msg.sender] = 0
    self.total_repayments_held -= amount
    log RepaymentsWithdrawn(lender=msg.sender, amount=amount)
    assert extcall STABLECOIN.transfer(msg.sender, amount, default_return_value=True), (
        "lending: withdrawal transfer failed"
    )
    return amount


@external
def restart_clock(loan_id: uint256):
    """
    @notice Anyone: restart the clock of a loan whose repayment the
            currency refused (`RepaymentRefused`), once the currency works
            again. The due date moves later by the time the clock stood
            still, and at least far enough that the borrower has
            `RESTART_WINDOW` seconds before the grace period ends.
            Foreclosure is impossible while the clock is stopped.
    @custom:security "The currency works" means it lets this contract
                     move a zero amount to itself: not paused and this
                     contract not blacklisted. The due date only moves
                     later, so a restart never costs the borrower time.
    """
    token_id: uint256 = loan_id & _U96
    terms: uint256 = self._open_terms(loan_id)
    assert terms & _CLOCK_STOPPED != 0, "lending: the loan's clock is running"
    assert not self._currency_halted(), "lending: the currency still refuses transfers"
    stopped_at: uint256 = self._party[token_id] >> 200
    grace: uint256 = (terms >> 200) & _U32
    due_at: uint256 = ((terms >> 160) & _U40) + (block.timestamp - stopped_at)
    if due_at + grace < block.timestamp + RESTART_WINDOW:
        due_at = block.timestamp + RESTART_WINDOW - grace
    due_at = min(due_at, _U40)
    self._terms[token_id] = (terms & ~(_U40 << 160) & ~_CLOCK_STOPPED) | (due_at << 160)
    log LoanClockRestarted(loan_id=loan_id, due_at=due_at, stopped_for=block.timestamp - stopped_at)


@external
@view
@reentrant
def clock_stopped_at(loan_id: uint256) -> uint256:
    """
    @notice When the currency refused this open loan's repayment and its
            clock stopped (unix time); zero while the clock runs (or for a
            loan that is not open).
    """
    terms: uint256 = self._terms[loan_id & _U96]
    if loan_id >> 96 != terms >> 240 or terms & _CLOCK_STOPPED == 0:
        return 0
    if (terms >> 232) & _STATE_BITS != convert(LOAN_OPEN, uint256):
        return 0
    return self._party[loan_id & _U96] >> 200


@internal
@view
def _repayment_nonce(loan_id: uint256) -> bytes32:
    return keccak256(abi_encode(self, loan_id))


@internal
@view
def _repayable_terms(loan_id: uint256) -> uint256:
    """
    @dev The terms word of an open loan that may be repaid now: within its
         grace period, or at any time while its clock is stopped.
    """
    terms: uint256 = self._open_terms(loan_id)
    assert terms & _CLOCK_STOPPED != 0 or block.timestamp <= ((terms >> 160) & _U40) + ((terms >> 200) & _U32), (
        "lending: loan is past its grace period"
    )
    return terms


@internal
def _close_repaid(loan_id: uint256, terms: uint256, money: uint256, payer: address):
    """
    @dev Marks an open loan repaid (its money has moved), unlocks the
         certificate for the borrower and updates the credit record. A
         loan whose clock stopped is late if it was already late when the
         currency refused its repayment.
    """
    token_id: uint256 = loan_id & _U96
    due_at: uint256 = (terms >> 160) & _U40
    self._terms[token_id] = (terms & ~_STATE_MASK) | (convert(LOAN_REPAID, uint256) << 232)
    late: bool = block.timestamp > due_at
    if terms & _CLOCK_STOPPED != 0:
        late = self._party[token_id] >> 200 > due_at
    borrower: address = extcall CERTIFICATE.release(token_id, empty(address))
    if late:
        self._credit[borrower] += 1 << 64
    else:
        self._credit[borrower] += 1 << 32
    self._credit_repaid[borrower] += money & _U128
    log LoanRepaid(loan_id=loan_id, borrower=borrower, payer=payer, repayment=money >> 128, late=late)


@internal
def _hold(loan_id: uint256, lender: address, amount: uint256):
    """
    @dev The repayment is in this contract; the lender withdraws it.
    """
    self.repayments_held[lender] += amount
    self.total_repayments_held += amount
    log RepaymentHeld(loan_id=loan_id, lender=lender, amount=amount)


@internal
def _stop_clock(loan_id: uint256, terms: uint256, payer: address):
    assert terms & _CLOCK_STOPPED == 0, "lending: the currency refused the repayment; the loan's clock is already stopped"
    token_id: uint256 = loan_id & _U96
    self._terms[token_id] = terms | _CLOCK_STOPPED
    self._party[token_id] = (self._party[token_id] & _U200) | (block.timestamp << 200)
    log RepaymentRefused(loan_id=loan_id, payer=payer)


@internal
def _try_transfer_from(payer: address, to: address, amount: uint256) -> bool:
    """
    @dev The stablecoin's `transferFrom`, answering False instead of
         reverting (a token that returns nothing counts as success).
    """
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        STABLECOIN.address,
        abi_encode(payer, to, amount, method_id=method_id("transferFrom(address,address,uint256)")),
        max_outsize=32,
        revert_on_failure=False,
    )
    return success and (len(response) == 0 or convert(response, bool))


@internal
def _try_transfer(to: address, amount: uint256) -> bool:
    """
    @dev The stablecoin's `transfer` from this contract, answering False
         instead of reverting.
    """
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        STABLECOIN.address,
        abi_encode(to, amount, method_id=method_id("transfer(address,uint256)")),
        max_outsize=32,
        revert_on_failure=False,
    )
    return success and (len(response) == 0 or convert(response, bool))


@internal
def _currency_halted() -> bool:
    """
    @dev Whether the stablecoin refuses this contract a zero-value
         transfer to itself: it is paused, or it blacklisted this
         contract. Then nobody can repay through this contract.
    """
    return not self._try_transfer(self, 0)


@internal
@view
def _can_pay(payer: address, amount: uint256, with_allowance: bool) -> bool:
    """
    @dev Whether `payer` holds `amount` (and, for `repay`, has approved it
         to this contract): a refusal then is the currency's, not the
         payer's.
    """
    if staticcall STABLECOIN.balanceOf(payer) < amount:
        return False
    return not with_allowance or staticcall STABLECOIN.allowance(payer, self) >= amount


@external
def foreclose(loan_id: uint256):
    """
    @notice Take the certificate of a loan not repaid by its due date plus
            grace period (from the next second on). It moves to the
            lender, unlocked; the borrower's record counts a default.
            The lender may foreclose from the first second after the grace
            period; anyone else from the first second after a further
            `OPEN_FORECLOSURE_DELAY` (30 days), so a lender that lost its
            key does not leave the certificate pledged forever; the
            certificate goes to the lender whoever calls. Not while the
            loan's clock is stopped (the currency refused its repayment,
            see `repay` and `restart_clock`). Works in shutdown mode; not
            while the certificate is paused.
    @dev No ERC-721 receiver hook is called (see `WineCertificate.release`):
         a lender contract must be able to hold certificates.
    @custom:security Privilege: the loan's lender, then anyone after the
                     further delay (the caller gains nothing: the
                     certificate is the lender's). Timing: one second
                     early reverts.
    """
    token_id: uint256 = loan_id & _U96
    terms: uint256 = self._open_terms(loan_id)
    lender: address = convert(terms & _ADDRESS_MASK, address)
    grace_ends_at: uint256 = ((terms >> 160) & _U40) + ((terms >> 200) & _U32)
    assert msg.sender == lender or block.timestamp > grace_ends_at + OPEN_FORECLOSURE_DELAY, (
        "lending: caller is not the lender"
    )
    assert terms & _CLOCK_STOPPED == 0, "lending: the currency refused the repayment; the loan's clock is stopped"
    assert block.timestamp > grace_ends_at, "lending: grace period has not ended"
    self._terms[token_id] = (terms & ~_STATE_MASK) | (convert(LOAN_FORECLOSED, uint256) << 232)
    borrower: address = extcall CERTIFICATE.release(token_id, lender)
    self._credit[borrower] += 1 << 96
    log LoanForeclosed(loan_id=loan_id, lender=lender, borrower=borrower)


@external
def extend_loan(
    loan_id: uint256,
    due_at: uint256,
    repayment: uint256,
    deadline: uint256,
    lender_signature: Bytes[65],
    borrower_signature: Bytes[65],
):
    """
    @notice Move an open loan's due date later, with a new repayment
            amount, on both parties' EIP-712 signatures of
            `LoanExtension(uint256 loanId,uint256 dueAt,uint256
            repayment,uint256 deadline)`. Anyone may submit it. The grace
            period stays as it was. Works in shutdown mode.
    @param due_at The new due date (unix time), later than the current one.
    @param repayment The new repayment amount, at least the principal.
    @custom:security Replay: a loan's due date only moves later, so an
                     extension applies once and an older one can never be
                     applied after a newer one; the loan id names one loan
                     of one certificate for good.
    """
    token_id: uint256 = loan_id & _U96
    terms: uint256 = self._open_terms(loan_id)
    assert block.timestamp <= deadline, "lending: extension expired"
    assert due_at > (terms >> 160) & _U40 and due_at <= _U40, "lending: due date is not later"
    money: uint256 = self._money[token_id]
    assert repayment >= money & _U128 and repayment <= _U128, "lending: repayment out of range"
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(LOAN_EXTENSION_TYPEHASH, loan_id, due_at, repayment, deadline))
    )
    assert self._signed_by(
        convert(terms & _ADDRESS_MASK, address), digest, lender_signature
    ), "lending: invalid lender signature"
    borrower: address = convert(self._party[token_id] & _ADDRESS_MASK, address)
    assert self._signed_by(borrower, digest, borrower_signature), (
        "lending: invalid borrower signature"
    )
    self._terms[token_id] = (terms & ~(_U40 << 160)) | (due_at << 160)
    self._money[token_id] = (money & _U128) | (repayment << 128)
    log LoanExtended(loan_id=loan_id, due_at=due_at, repayment=repayment)


# ----------------------------------------------------------------- offers


@external
def cancel_offer(nonce: uint256):
    """
    @notice Lender: cancel the offer (or offers) signed with `nonce`.
    """
    word: uint256 = self._nonce_bits[msg.sender][nonce >> 8]
    self._nonce_bits[msg.sender][nonce >> 8] = word | (1 << (nonce & 255))
    log OfferCancelled(lender=msg.sender, nonce=nonce)


@external
def cancel_offers_below(nonce: uint256):
    """
    @notice Lender: cancel every offer signed with a nonce below `nonce`.
            The floor only rises.
    """
    assert nonce > self.nonce_floor[msg.sender], "lending: nonce floor can only rise"
    self.nonce_floor[msg.sender] = nonce
    log OffersCancelledBelow(lender=msg.sender, nonce=nonce)


@external
@view
@reentrant
def nonce_used(lender: address, nonce: uint256) -> bool:
    """
    @notice Whether `lender`'s offers with `nonce` can no longer be
            accepted (used, cancelled, or below the lender's floor).
    """
    return self._nonce_spent(lender, nonce)


@external
@view
@reentrant
def offer_hash(offer: LoanOffer) -> bytes32:
    """
    @notice The offer's EIP-712 digest: what the lender signs, what the
            borrower's `AcceptOffer` names, and `LoanStarted.offer_hash`.
    """
    return self._offer_hash(offer)


@external
@view
@reentrant
def DOMAIN_SEPARATOR() -> bytes32:
    """
    @notice The EIP-712 domain separator for the current chain.
    """
    return eip712_domain_separator._domain_separator_v4()


# ------------------------------------------------------------- appraisals


@external
def post_appraisal(lot_id: uint256, value_per_bottle: uint256, appraised_at: uint256):
    """
    @notice Appraiser: a lot's value per bottle in stablecoin units, as of
            `appraised_at` (unix time, not in the future, later than the
            lot's current appraisal). Offers with a maximum loan-to-value
            use the latest one while it is at most `max_appraisal_age` old.
    @custom:security Privilege: appraisers only (the admin appoints them).
                     An appraisal affects only loans not yet made.
    """
    assert self.is_appraiser[msg.sender], "lending: caller is not an appraiser"
    assert value_per_bottle != 0 and value_per_bottle <= _U208, "lending: value out of range"
    assert appraised_at <= block.timestamp, "lending: appraisal dated in the future"
    assert appraised_at > self._appraisals[lot_id] >> 208, "lending: appraisal older than the lot's latest"
    assert lot_id <= _U64 and staticcall CERTIFICATE.custodian_of((lot_id << SERIAL_BITS) | 1) != empty(
        address
    ), "lending: lot does not exist"
    self._appraisals[lot_id] = value_per_bottle | (appraised_at << 208)
    log AppraisalPosted(
        lot_id=lot_id, appraiser=msg.sender, value_per_bottle=value_per_bottle, appraised_at=appraised_at
    )


@external
@view
@reentrant
def appraisal(lot_id: uint256) -> Appraisal:
    """
    @notice A lot's latest appraisal, its age and whether it is stale.
    """
    return self._appraisal(lot_id)


# ------------------------------------------------------------------ views


@external
@view
@reentrant
def loan(loan_id: uint256) -> Loan:
    """
    @notice A loan's terms and state. Reverts for an id that was never a
            loan or whose certificate has had a newer loan since (its
            terms stay in the `LoanStarted` event).
    """
    token_id: uint256 = loan_id & _U96
    assert loan_id >> 96 != 0 and loan_id >> 96 == self._terms[token_id] >> 240, "lending: unknown loan"
    return self._loan(token_id)


@external
@view
@reentrant
def loan_id_of(token_id: uint256) -> uint256:
    """
    @notice The id of the certificate's latest loan here (zero if never
            pledged); `loan(id).state` says whether it is open.
    """
    seq: uint256 = self._terms[token_id] >> 240
    if seq == 0:
        return 0
    return (seq << 96) | token_id


@external
@view
@reentrant
def credit_record(account: address) -> CreditRecord:
    """
    @notice An account's record as a borrower here. Readable by anyone.
    """
    return self._credit_record(account)


@external
@view
@reentrant
def collateral(token_id: uint256) -> Collateral:
    """
    @notice The lender's view of a certificate, in one call: its latest
            loan here (terms, state, seconds to the due date and to the
            end of the grace period), the certificate's lifecycle state,
            holder and flag, its custodian with the lot's latest storage
            attestation and the custodian's latest reserve root, the lot's
            latest appraisal and its age, the loan-to-value (principal /
            value per bottle) and the borrower's credit record. Never
            reverts for a token never issued (empty fields). While the
            loan's clock is stopped (`clock_stopped_at`, a repayment the
            currency refused) its grace end does not apply: nobody can
            foreclose until `restart_clock` moves the due date.
    """
    result: Collateral = empty(Collateral)
    result.loan = self._loan(token_id)
    if result.loan.state == LOAN_OPEN:
        if block.timestamp < result.loan.due_at:
            result.seconds_to_due = result.loan.due_at - block.timestamp
        if block.timestamp < result.loan.grace_ends_at:
            result.seconds_to_grace_end = result.loan.grace_ends_at - block.timestamp
    cert: Certificate = staticcall CERTIFICATE.certificate(token_id)
    result.certificate_exists = cert.exists
    result.certificate_state = cert.state
    result.certificate_owner = cert.owner
    result.flagged = cert.state == 5
    result.flag_reason_hash = cert.flag_reason_hash
    result.custodian_active = cert.custodian_active
    custody: Custody = staticcall REGISTRY.custody(token_id)
    result.custodian = custody.custodian
    result.storage_document_hash = custody.storage_document_hash
    result.storage_attested_at = custody.storage_attested_at
    result.storage_attested_by = custody.storage_attested_by
    result.reserve_root = custody.reserve_root
    result.reserve_posted_at = custody.reserve_posted_at
    result.appraisal = self._appraisal(token_id >> SERIAL_BITS)
    if result.appraisal.value_per_bottle != 0:
        result.ltv_bps = result.loan.principal * BPS // result.appraisal.value_per_bottle
    if result.loan.borrower != empty(address):
        result.borrower_credit = self._credit_record(result.loan.borrower)
    return result


# ------------------------------------------------------------------ admin


@external
def set_appraiser(account: address, allowed: bool):
    """
    @notice Admin: let `account` post appraisals, or stop it.
    """
    ownable._check_owner()
    assert account != empty(address), "lending: account is the zero address"
    self.is_appraiser[account] = allowed
    log AppraiserSet(account=account, allowed=allowed)


@external
def set_max_appraisal_age(max_appraisal_age_: uint256):
    """
    @notice Admin: how old an appraisal may be for an offer with a maximum
            loan-to-value. Affects only loans not yet made.
    """
    ownable._check_owner()
    self.max_appraisal_age = max_appraisal_age_
    log MaxAppraisalAgeSet(max_appraisal_age=max_appraisal_age_)


@external
def pause():
    """
    @notice Admin: shutdown mode; no new loans. Repay, foreclose and
            extensions keep working.
    """
    ownable._check_owner()
    pausable._pause()


@external
def unpause():
    """
    @notice Admin: accept new loans again.
    """
    ownable._check_owner()
    pausable._unpause()


# --------------------------------------------------------------- internals


@internal
def _accept(offer: LoanOffer, lender_signature: Bytes[65], token_id: uint256, borrower: address) -> uint256:
    """
    @dev Every check of an offer, then the loan's storage, the borrower's
         record and the spent nonce; then the pledge (the certificate
         checks the holder and the collateral's standing) and last the
         principal's transfer.
    """
    pausable._require_not_paused()
    assert block.timestamp <= offer.expiry, "lending: offer expired"
    assert offer.currency == STABLECOIN.address, "lending: offer is in another currency"
    assert token_id >> SERIAL_BITS == offer.lot_id and (offer.token_id == 0 or offer.token_id == token_id), (
        "lending: token is not the offer's collateral"
    )
    assert offer.lender != borrower, "lending: borrower is the lender"
    assert offer.principal != 0 and offer.repayment >= offer.principal and offer.repayment <= _U128, (
        "lending: amounts out of range"
    )
    assert offer.grace_period <= _U32, "lending: grace period out of range"
    due_at: uint256 = block.timestamp + offer.duration
    assert offer.duration != 0 and due_at <= _U40, "lending: duration out of range"
    if offer.max_ltv_bps != 0:
        appraisal: uint256 = self._appraisals[offer.lot_id]
        value: uint256 = appraisal & _U208
        assert value != 0, "lending: lot has no appraisal"
        assert block.timestamp - (appraisal >> 208) <= self.max_appraisal_age, "lending: appraisal is stale"
        assert offer.principal * BPS <= offer.max_ltv_bps * value, "lending: loan-to-value above the offer's limit"
    assert offer.nonce >= self.nonce_floor[offer.lender], "lending: offer cancelled"
    bits: uint256 = self._nonce_bits[offer.lender][offer.nonce >> 8]
    bit: uint256 = 1 << (offer.nonce & 255)
    assert bits & bit == 0, "lending: offer used or cancelled"
    offer_hash: bytes32 = self._offer_hash(offer)
    assert offer.lender != empty(address) and self._signed_by(
        offer.lender, offer_hash, lender_signature
    ), "lending: invalid lender signature"

    self._nonce_bits[offer.lender][offer.nonce >> 8] = bits | bit
    seq: uint256 = (self._terms[token_id] >> 240) + 1
    assert seq <= 65_535, "lending: loan ids of this token exhausted"
    self._terms[token_id] = (
        convert(offer.lender, uint256)
        | (due_at << 160)
        | (offer.grace_period << 200)
        | (convert(LOAN_OPEN, uint256) << 232)
        | (seq << 240)
    )
    self._money[token_id] = offer.principal | (offer.repayment << 128)
    self._party[token_id] = convert(borrower, uint256) | (block.timestamp << 160)
    self._credit[borrower] += 1 | (offer.principal << 128)
    loan_id: uint256 = (seq << 96) | token_id
    log LoanStarted(
        loan_id=loan_id,
        lender=offer.lender,
        borrower=borrower,
        token_id=token_id,
        principal=offer.principal,
        repayment=offer.repayment,
        due_at=due_at,
        grace_period=offer.grace_period,
        offer_hash=offer_hash,
    )
    extcall CERTIFICATE.pledge(token_id, borrower)
    assert extcall STABLECOIN.transferFrom(offer.lender, borrower, offer.principal, default_return_value=True), (
        "lending: principal transfer failed"
    )
    return loan_id


@internal
@view
def _signed_by(signer: address, digest: bytes32, signature: Bytes[65]) -> bool:
    """
    @dev Whether `signer` signed `digest`: a 65-byte signature is checked
         as ECDSA first, whether or not `signer` has code (an EOA with an
         EIP-7702 delegation has code and still holds its key), then as
         ERC-1271 if `signer` has code (`vrs_signature`, as the tokens do);
         high-s ECDSA never passes. Other lengths (EIP-2098 compact
         signatures, a contract's own format) go to snekmate's
         `signature_checker` as before.
    """
    if len(signature) == 65:
        return vrs_signature._is_valid(
            signer,
            digest,
            convert(slice(signature, 64, 1), uint8),
            extract32(signature, 0),
            extract32(signature, 32),
        )
    return signature_checker._is_valid_signature_now(signer, digest, signature)


@internal
@view
def _offer_hash(offer: LoanOffer) -> bytes32:
    return eip712_domain_separator._hash_typed_data_v4(keccak256(abi_encode(LOAN_OFFER_TYPEHASH, offer)))


@internal
@view
def _open_terms(loan_id: uint256) -> uint256:
    """
    @dev The terms word of an open loan; reverts for any other id.
    """
    terms: uint256 = self._terms[loan_id & _U96]
    assert loan_id >> 96 == terms >> 240 and (terms >> 232) & _STATE_BITS == convert(LOAN_OPEN, uint256), (
        "lending: loan is not open"
    )
    return terms


@internal
@view
def _nonce_spent(lender: address, nonce: uint256) -> bool:
    if nonce < self.nonce_floor[lender]:
        return True
    return self._nonce_bits[lender][nonce >> 8] & (1 << (nonce & 255)) != 0


@internal
@view
def _loan(token_id: uint256) -> Loan:
    """
    @dev The token's latest loan; empty if it was never pledged here.
    """
    result: Loan = empty(Loan)
    terms: uint256 = self._terms[token_id]
    if terms == 0:
        return result
    money: uint256 = self._money[token_id]
    party: uint256 = self._party[token_id]
    result.loan_id = ((terms >> 240) << 96) | token_id
    result.token_id = token_id
    result.lot_id = token_id >> SERIAL_BITS
    result.state = convert((terms >> 232) & _STATE_BITS, uint8)
    result.lender = convert(terms & _ADDRESS_MASK, address)
    result.borrower = convert(party & _ADDRESS_MASK, address)
    result.principal = money & _U128
    result.repayment = money >> 128
    result.started_at = party >> 160
    result.due_at = (terms >> 160) & _U40
    result.grace_period = (terms >> 200) & _U32
    result.grace_ends_at = result.due_at + result.grace_period
    return result


@internal
@view
def _credit_record(account: address) -> CreditRecord:
    word: uint256 = self._credit[account]
    result: CreditRecord = CreditRecord(
        loans_taken=word & _U32,
        repaid_on_time=(word >> 32) & _U32,
        repaid_late=(word >> 64) & _U32,
        defaulted=(word >> 96) & _U32,
        open_loans=0,
        principal_borrowed=word >> 128,
        principal_repaid=self._credit_repaid[account],
    )
    result.open_loans = result.loans_taken - result.repaid_on_time - result.repaid_late - result.defaulted
    return result


@internal
@view
def _appraisal(lot_id: uint256) -> Appraisal:
    word: uint256 = self._appraisals[lot_id]
    if word == 0:
        return Appraisal(value_per_bottle=0, appraised_at=0, age=0, stale=True)
    at: uint256 = word >> 208
    age: uint256 = block.timestamp - at
    return Appraisal(value_per_bottle=word & _U208, appraised_at=at, age=age, stale=age > self.max_appraisal_age)
