# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
# pragma optimize codesize
# pragma experimental-codegen
"""
@title Amphora Wine Certificate
@custom:contract-name WineCertificate
@license GNU Affero General Public License v3.0 only
@notice One ERC-721 certificate per physical bottle of wine. A winery
        (issuer) issues a whole production lot in one transaction; every
        bottle of the lot is a token whose id encodes the lot and the
        bottle's serial number. Consumers verify a certificate with
        `certificate` and check a bottle's tag with `verify_tag`; holders
        transfer directly or by an EIP-712 signature that anyone (the
        Amphora relayer) may submit, so the holder needs no gas.
@dev Storage layout, chosen for gas:
     - A lot is four packed words. Nothing is stored per bottle at
       issuance, so issuing 1 or 10,000 bottles costs the same; one
       ERC-2309 `ConsecutiveTransfer` event announces the range.
     - A bottle gets one word of its own (owner, state, approval epoch)
       the first time it changes hands or state. Until then its owner is
       its lot's issuer and its state is `active`.
     - An account's balance and its signature nonce share one word, so
       the nonce of a signed transfer is written together with the
       balance the transfer changes anyway.
     - An approval is stamped with the token's epoch; every transfer bumps
       the epoch, which clears the approval without touching its slot.
     The descriptive text of a lot (producer, wine, appellation, metadata
     URI) is emitted in `LotIssued` and committed to by the stored
     `metadata_hash`; only fixed-size facts are stored.
     Lifecycle (`_set_state` is the one place a live certificate changes
     state; `confirm_redemption` writes a burned one's final record):
     - A bottle's word holds its state in the low four bits of the byte
       above the owner; bit 4 of that byte records that the lot's issuer
       (not the holder) raised the current flag. A redeemed bottle's word
       holds the custodian that shipped it where the owner was, state
       `REDEEMED`, and the redemption time where the epoch was.
     - A bottle's detail word holds what its current lock needs: the claim
       key and expiry of a pending gift, the delivery order hash of a
       redemption, the reason hash of a flag. It is not cleared on unlock:
       the next lock overwrites it for 5,000 gas instead of 22,100.
     - A claim key is recorded as used when its gift is created, forever.
     - Custodians' storage attestations and proof-of-reserve roots live
       in `CustodyRegistry`, which reads roles and lots from here.
     Allowed transitions (anything else reverts naming the current state):
     | from                 | to                   | by                                  |
     | active               | gift_pending         | holder: `create_gift`               |
     | gift_pending         | active (new holder)  | claim-key signature: `claim_gift`   |
     | gift_pending         | active               | holder; anyone after expiry: `revoke_gift` |
     | active               | redemption_requested | holder: `request_redemption`        |
     | redemption_requested | redeemed (burned)    | lot's custodian: `confirm_redemption` |
     | redemption_requested | active               | lot's custodian: `reject_redemption` |
     | active               | flagged              | holder or lot's acting issuer: `flag` |
     | flagged              | active               | lot's acting issuer or admin: `clear_flag` |
     | active               | pledged              | the lending contract: `pledge`      |
     | pledged              | active               | the lending contract: `release` (repaid) |
     | pledged              | active (lender)      | the lending contract: `release` to the lender (foreclosed) |
     A pledge is held by the one lending contract set with
     `set_lending` (`PledgeLending`), which keeps the loan; the
     certificate keeps only the state. The lot's acting issuer is the
     successor the admin named for the lot, else its issuer, while it
     holds the issuer role (`_acting_issuer`).
     Code size: compiled with Vyper's Venom pipeline
     (`# pragma experimental-codegen`) and `# pragma optimize codesize`,
     the deployed code keeps over 2,048 bytes of the 24,576-byte EIP-170
     limit free for later features; the legacy pipeline no longer fits
     (docs/hardening/certificate.md has the figures and the trade-off).
     Every holder action has a `_with_signature` form (EIP-712, one
     sequential nonce per holder, ECDSA first, then ERC-1271 for a holder
     with code). A holder voids signatures it no longer wants run with
     `invalidate_nonces` (or its signed form).
     ERC-4906: every lifecycle state change logs `MetadataUpdate`, a
     custody move `BatchMetadataUpdate` over the lot, a base URI change
     `BatchMetadataUpdate` over every id.
@custom:security Emergency: the admin calls `pause`, which stops whatever
                 moves, burns or starts to move a certificate: issuance,
                 every transfer (direct or signed), gift creation and
                 claims, redemption requests and confirmations. It lets
                 through whatever only protects a certificate or returns it
                 to its holder: flagging and clearing a flag, revoking a
                 gift, rejecting a redemption, releasing a pledge to its
                 holder; and custody moves, which move no token. Pledges
                 and foreclosures to a lender stop too. No function lets
                 anyone, the admin included, move a token they do not own
                 or are not approved for (a gift claim is the holder's own
                 prior approval, bound to one claim key; a foreclosure the
                 borrower's acceptance of a loan, checked by the lending
                 contract the admin wires once with `set_lending`), paused
                 or not.
"""


from ethereum.ercs import IERC165
implements: IERC165

# @dev Not `implements: IERC721`: Vyper's built-in interface declares the
# transfer functions `payable`, and ERC-721 lets an implementation make them
# non-payable. Ether sent with a transfer would be stranded here, so the
# ERC-721 functions are non-payable; the conformance suite checks the ABI.


from snekmate.auth import ownable
initializes: ownable

from snekmate.auth import ownable_2step
initializes: ownable_2step[ownable := ownable]

from snekmate.utils import pausable
initializes: pausable

from snekmate.utils import eip712_domain_separator
initializes: eip712_domain_separator

from snekmate.utils import signature_checker
from snekmate.utils import ecdsa
from snekmate.utils import merkle_proof_verification


# @dev `renounce_ownership` is left out on purpose: a certificate registry
# without an admin could never be paused again nor register a new winery.
exports: (
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
    eip712_domain_separator.eip712Domain,
)


interface IERC721Receiver:
    def onERC721Received(
        _operator: address, _from: address, _tokenId: uint256, _data: Bytes[1_024]
    ) -> bytes4: nonpayable


# @dev Lifecycle states. `ACTIVE` is zero so that an untouched bottle,
# which has no storage of its own, reads as active.
ACTIVE: public(constant(uint8)) = 0
GIFT_PENDING: public(constant(uint8)) = 1
PLEDGED: public(constant(uint8)) = 2
REDEMPTION_REQUESTED: public(constant(uint8)) = 3
REDEEMED: public(constant(uint8)) = 4
FLAGGED: public(constant(uint8)) = 5

# @dev A token id is `lot_id << SERIAL_BITS | serial`, serials from 1.
SERIAL_BITS: public(constant(uint256)) = 32
_SERIAL_MASK: constant(uint256) = (1 << SERIAL_BITS) - 1
MAX_BOTTLES_PER_LOT: public(constant(uint256)) = 1_000_000
# @dev Lot ids fit in 64 bits so that a lot's token ids fit in 96.
_MAX_LOT_ID: constant(uint256) = (1 << 64) - 1

_ADDRESS_MASK: constant(uint256) = (1 << 160) - 1
_U32: constant(uint256) = (1 << 32) - 1
_U16: constant(uint256) = (1 << 16) - 1
_U48: constant(uint256) = (1 << 48) - 1
_U88: constant(uint256) = (1 << 88) - 1
_U128: constant(uint256) = (1 << 128) - 1

# @dev Maximum depth of a tag Merkle proof (trees of up to 2**32 leaves).
MAX_PROOF_DEPTH: constant(uint256) = 32

TRANSFER_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Transfer(address from,address to,uint256 tokenId,uint256 nonce,uint256 deadline)"
)
CREATE_GIFT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "CreateGift(address holder,uint256 tokenId,address claimKey,uint256 expiry,uint256 nonce,uint256 deadline)"
)
REVOKE_GIFT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "RevokeGift(address holder,uint256 tokenId,uint256 nonce,uint256 deadline)"
)
# @dev Signed at the holder's current nonce: every nonce below `newNonce` dies.
INVALIDATE_NONCES_TYPEHASH: public(constant(bytes32)) = keccak256(
    "InvalidateNonces(address holder,uint256 nonce,uint256 newNonce,uint256 deadline)"
)
# @dev Signed by the gift's claim key, not by the holder: no nonce, since a
# claim key is accepted for exactly one gift ever.
CLAIM_GIFT_TYPEHASH: public(constant(bytes32)) = keccak256("ClaimGift(uint256 tokenId,address recipient)")
REQUEST_REDEMPTION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "RequestRedemption(address holder,uint256 tokenId,bytes32 orderHash,uint256 nonce,uint256 deadline)"
)
FLAG_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Flag(address holder,uint256 tokenId,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
)
# @dev Signed by a bottle's tag key over a recent block.
TAG_CHALLENGE_TYPEHASH: public(constant(bytes32)) = keccak256(
    "TagChallenge(uint256 tokenId,uint256 blockNumber,bytes32 blockHash)"
)

# @notice How many blocks old a tag challenge may be: 64 blocks is about 13
#         minutes at 12-second blocks and 2 minutes at 2-second blocks,
#         ample for a scan and short enough that a recorded answer soon
#         stops passing. Within the 256 blocks `BLOCKHASH` can see.
TAG_CHALLENGE_WINDOW: public(constant(uint256)) = 64

# @dev Bit 4 of the state byte: the lot's issuer raised the current flag.
_FLAGGED_BY_ISSUER: constant(uint8) = 16
_U64: constant(uint256) = (1 << 64) - 1

_ERC721_RECEIVED: constant(bytes4) = method_id(
    "onERC721Received(address,address,uint256,bytes)", output_type=bytes4
)

_SUPPORTED_INTERFACES: constant(bytes4[5]) = [
    0x01FFC9A7,  # ERC-165
    0x80AC58CD,  # ERC-721
    0x5B5E139F,  # ERC-721 metadata
    0xB45A3C0E,  # ERC-5192 minimal soulbound (`locked`)
    0x49064906,  # ERC-4906 metadata update
]


struct Lot:
    lot_id: uint256
    issuer: address
    custodian: address
    bottle_count: uint256
    vintage: uint256
    volume_ml: uint256
    bottling_date: uint256
    issued_at: uint256
    metadata_hash: bytes32
    tag_root: bytes32
    first_token_id: uint256
    last_token_id: uint256


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
    # The current flag: its reason hash, and whether the lot's issuer (not
    # the holder) raised it. Empty unless flagged.
    flag_reason_hash: bytes32
    flagged_by_issuer: bool
    # The pending gift's claim key and expiry (unix time). Empty unless gift pending.
    gift_claim_key: address
    gift_expiry: uint256
    # The delivery order hash of a requested or completed redemption, and
    # for a redeemed bottle when and by which custodian it was shipped.
    redemption_order_hash: bytes32
    redeemed_at: uint256
    redeemed_by: address


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    token_id: indexed(uint256)


event Approval:
    owner: indexed(address)
    approved: indexed(address)
    token_id: indexed(uint256)


event ApprovalForAll:
    owner: indexed(address)
    operator: indexed(address)
    approved: bool


# @dev ERC-2309: a range of tokens created (or moved) in one event.
event ConsecutiveTransfer:
    fromTokenId: indexed(uint256)
    toTokenId: uint256
    fromAddress: indexed(address)
    toAddress: indexed(address)


# @dev ERC-5192.
event Locked:
    tokenId: uint256


event Unlocked:
    tokenId: uint256


# @dev ERC-4906: the metadata JSON of one token, or of a range, changed.
event MetadataUpdate:
    _tokenId: uint256


event BatchMetadataUpdate:
    _fromTokenId: uint256
    _toTokenId: uint256


event LotIssued:
    lot_id: indexed(uint256)
    issuer: indexed(address)
    custodian: indexed(address)
    first_token_id: uint256
    bottle_count: uint256
    vintage: uint256
    volume_ml: uint256
    bottling_date: uint256
    metadata_hash: bytes32
    tag_root: bytes32
    producer: String[64]
    wine: String[96]
    region: String[96]
    metadata_uri: String[256]


event IssuerGranted:
    account: indexed(address)
    name: String[64]


event IssuerRevoked:
    account: indexed(address)


event CustodianGranted:
    account: indexed(address)
    name: String[64]


event CustodianRevoked:
    account: indexed(address)


event CertificateFlagged:
    token_id: indexed(uint256)
    by: indexed(address)
    reason_hash: bytes32


event FlagCleared:
    token_id: indexed(uint256)
    by: indexed(address)


# @dev The admin named `successor` to act for a lot's issuer (flag and
# clear flags of its bottles); zero withdraws the nomination.
event SuccessorIssuerNamed:
    lot_id: indexed(uint256)
    successor: indexed(address)


# @dev `holder` made every signature nonce below `nonce` unusable.
event NoncesInvalidated:
    holder: indexed(address)
    nonce: uint256


event LendingSet:
    lending: indexed(address)


# @dev `receiver` is the holder when a loan was repaid, the lender when it
# was foreclosed (a `Transfer` to the lender precedes it).
event CertificatePledged:
    token_id: indexed(uint256)
    holder: indexed(address)


event CertificateReleased:
    token_id: indexed(uint256)
    holder: indexed(address)
    receiver: indexed(address)


# @dev The lifecycle events, one per transition, each logged right after the
# change it reports (and after ERC-5192 `Locked`/`Unlocked`).
event GiftCreated:
    token_id: indexed(uint256)
    holder: indexed(address)
    claim_key: indexed(address)
    expiry: uint256


event GiftClaimed:
    token_id: indexed(uint256)
    holder: indexed(address)
    recipient: indexed(address)
    claim_key: address


event GiftRevoked:
    token_id: indexed(uint256)
    holder: indexed(address)
    by: indexed(address)


event RedemptionRequested:
    token_id: indexed(uint256)
    holder: indexed(address)
    custodian: indexed(address)
    order_hash: bytes32


event CertificateRedeemed:
    token_id: indexed(uint256)
    holder: indexed(address)
    custodian: indexed(address)


event RedemptionRejected:
    token_id: indexed(uint256)
    custodian: indexed(address)
    reason_hash: bytes32


event CustodyMoved:
    lot_id: indexed(uint256)
    previous_custodian: indexed(address)
    custodian: indexed(address)


event BaseURIUpdated:
    base_uri: String[256]


# @notice Whether an account may issue lots (a registered winery).
is_issuer: public(HashMap[address, bool])
# @notice Whether an account may hold lots in custody (a cellar).
is_custodian: public(HashMap[address, bool])
# @notice The name the admin registered for an issuer or custodian.
party_name: public(HashMap[address, String[64]])

_NAME: immutable(String[64])
_SYMBOL: immutable(String[16])
_base_uri: String[256]

# @dev lot_id => issuer | bottle_count << 160 | vintage << 192 | volume_ml << 208
_lot_a: HashMap[uint256, uint256]
# @dev lot_id => custodian | bottling_date << 160 | issued_at << 208
_lot_b: HashMap[uint256, uint256]
_lot_metadata_hash: HashMap[uint256, bytes32]
_lot_tag_root: HashMap[uint256, bytes32]
# @dev lot_count | total_supply << 128
_counts: uint256
# @dev token_id => owner | state << 160 | epoch << 168; zero until touched.
#      Redeemed: custodian | REDEEMED << 160 | redeemed_at << 168.
_tokens: HashMap[uint256, uint256]
# @dev token_id => the current lock's detail (see the layout above).
_details: HashMap[uint256, uint256]
# @notice Whether a claim key was ever given to a gift; each works once.
claim_key_used: public(HashMap[address, bool])

# @dev token_id => approved | epoch << 160
_approvals: HashMap[uint256, uint256]
# @dev account => balance | nonce << 128
_accounts: HashMap[address, uint256]
# @notice Whether `operator` may move every token of `owner`.
isApprovedForAll: public(HashMap[address, HashMap[address, bool]])
# @notice The one lending contract that may pledge and release
#         certificates (`PledgeLending`); set once by the admin.
lending: public(address)
# @notice lot_id => the registered issuer the admin named to act for the
#         lot's issuer (flag its bottles, clear their flags); zero if none.
successor_issuer: public(HashMap[uint256, address])


@deploy
def __init__(name_: String[64], symbol_: String[16], base_uri_: String[256], eip712_name_: String[50], eip712_version_: String[20]):
    """
    @notice The deployer becomes the admin.
    @param name_ The ERC-721 collection name.
    @param symbol_ The ERC-721 symbol.
    @param base_uri_ Prefix of every `tokenURI`; the token id is appended.
    @param eip712_name_ The EIP-712 domain name signatures are bound to.
    @param eip712_version_ The EIP-712 domain version.
    """
    ownable.__init__()
    ownable_2step.__init__()
    pausable.__init__()
    eip712_domain_separator.__init__(eip712_name_, eip712_version_)
    _NAME = name_
    _SYMBOL = symbol_
    self._base_uri = base_uri_


# ---------------------------------------------------------------- ERC-165


@external
@view
@reentrant
def supportsInterface(interface_id: bytes4) -> bool:
    """
    @notice ERC-165: ERC-165, ERC-721, ERC-721 metadata, ERC-5192, ERC-4906.
    """
    return interface_id in _SUPPORTED_INTERFACES


# ------------------------------------------------------- ERC-721 metadata


@external
@view
@reentrant
def name() -> String[64]:
    return _NAME


@external
@view
@reentrant
def symbol() -> String[16]:
    return _SYMBOL


@external
@view
@reentrant
def tokenURI(token_id: uint256) -> String[334]:
    """
    @notice The metadata URI of a certificate: the base URI followed by
            the decimal token id. Reverts for a token that does not exist.
    """
    self._owner_of(token_id)
    return concat(self._base_uri, uint2str(token_id))


@external
@view
@reentrant
def baseURI() -> String[256]:
    return self._base_uri


@external
def set_base_uri(base_uri: String[256]):
    """
    @notice Admin: change the prefix of every token URI.
    @dev Emits ERC-4906 `BatchMetadataUpdate` over all token ids.
    """
    ownable._check_owner()
    self._base_uri = base_uri
    log BaseURIUpdated(base_uri=base_uri)
    log BatchMetadataUpdate(_fromTokenId=0, _toTokenId=max_value(uint256))


# ----------------------------------------------------------------- ERC-721


@external
@view
@reentrant
def balanceOf(_owner: address) -> uint256:
    """
    @notice The number of certificates `_owner` holds, issued stock included.
    """
    assert _owner != empty(address), "certificate: balance query for the zero address"
    return self._accounts[_owner] & _U128


@external
@view
@reentrant
def ownerOf(_tokenId: uint256) -> address:
    """
    @notice The holder of a certificate. Reverts if it does not exist.
    """
    return self._owner_of(_tokenId)[0]


@external
@view
@reentrant
def getApproved(_tokenId: uint256) -> address:
    """
    @notice The one address approved to move this certificate, if any.
    """
    word: uint256 = self._owner_of(_tokenId)[1]
    return self._approved(_tokenId, word)


@external
def approve(_approved: address, _tokenId: uint256):
    """
    @notice Approve one address to move a certificate (zero clears).
    @dev Only the owner or one of its operators may approve.
    """
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(_tokenId)
    assert _approved != owner, "certificate: approval to current owner"
    assert msg.sender == owner or self.isApprovedForAll[owner][msg.sender], (
        "certificate: caller is not token owner or approved for all"
    )
    self._approvals[_tokenId] = convert(_approved, uint256) | ((word >> 168) << 160)
    log Approval(owner=owner, approved=_approved, token_id=_tokenId)


@external
def setApprovalForAll(_operator: address, _approved: bool):
    """
    @notice Let `_operator` move every certificate of the caller, or stop it.
    """
    assert _operator != msg.sender, "certificate: approve to caller"
    assert _operator != empty(address), "certificate: operator is the zero address"
    self.isApprovedForAll[msg.sender][_operator] = _approved
    log ApprovalForAll(owner=msg.sender, operator=_operator, approved=_approved)


@external
def transferFrom(_from: address, _to: address, _tokenId: uint256):
    """
    @notice Move a certificate. The caller must be the owner, approved
            for the token, or an operator of the owner. No receiver check:
            prefer `safeTransferFrom` when `_to` may be a contract.
    """
    self._transfer(_from, _to, _tokenId, msg.sender)


@external
def safeTransferFrom(_from: address, _to: address, _tokenId: uint256, _data: Bytes[1_024] = b""):
    """
    @notice Move a certificate; if `_to` is a contract it must accept it
            through `onERC721Received`, or the transfer reverts.
    @dev `_data` is passed to the receiver as is; it is bounded at 1,024
         bytes (a longer value does not ABI-decode and the call reverts).
    """
    self._transfer(_from, _to, _tokenId, msg.sender)
    self._check_receiver(msg.sender, _from, _to, _tokenId, _data)


# ----------------------------------------------------------------- ERC-5192


@external
@view
@reentrant
def locked(tokenId: uint256) -> bool:
    """
    @notice ERC-5192: whether the certificate cannot move now (gift
            pending, pledged, redemption requested, or flagged).
    """
    word: uint256 = self._owner_of(tokenId)[1]
    return self._state(word) != ACTIVE


@external
@view
@reentrant
def state_of(token_id: uint256) -> uint8:
    """
    @notice The lifecycle state of a certificate (see the state constants).
            A redeemed certificate answers `REDEEMED`.
    """
    word: uint256 = self._tokens[token_id]
    if word == 0:
        self._owner_of(token_id)
        return ACTIVE
    return self._state(word)


# ----------------------------------------------------------- signed transfer


@external
@view
@reentrant
def nonces(owner: address) -> uint256:
    """
    @notice The nonce the next signed transfer of `owner` must carry.
    """
    return self._accounts[owner] >> 128


@external
@view
@reentrant
def DOMAIN_SEPARATOR() -> bytes32:
    """
    @notice The EIP-712 domain separator for the current chain.
    """
    return eip712_domain_separator._domain_separator_v4()


@external
def transfer_with_signature(
    _from: address, _to: address, token_id: uint256, nonce: uint256, deadline: uint256, signature: Bytes[65]
):
    """
    @notice Move a certificate on the holder's EIP-712 signature. Anyone
            may submit it (the relayer pays the gas); the holder stays the
            actor: the `Transfer` event names the holder as sender.
    @dev The typed message is `Transfer(address from,address to,uint256
         tokenId,uint256 nonce,uint256 deadline)` in this contract's domain
         (which binds the chain id and this address, so the signature does
         not replay on another chain or on a fork with a new chain id).
         Nonces are sequential per holder and consumed on use. A valid
         ECDSA signature by the holder passes (high-s rejected), also from
         an EOA with an EIP-7702 delegation; otherwise a holder with code
         answers ERC-1271. `invalidate_nonces` voids unused signatures.
         A contract recipient must accept the token as in
         `safeTransferFrom`, so a relayed transfer cannot strand it.
    """
    # The nonce is consumed in the same word as the balance change below.
    self._check_holder_signature(
        _from, keccak256(abi_encode(TRANSFER_TYPEHASH, _from, _to, token_id, nonce, deadline)), nonce, deadline, signature
    )
    self._transfer(_from, _to, token_id, _from)
    self._check_receiver(_from, _from, _to, token_id, b"")


@external
def invalidate_nonces(new_nonce: uint256):
    """
    @notice Holder: make every signature nonce of the caller below
            `new_nonce` unusable, so that no action signed with one (a
            transfer, gift, redemption or flag, e.g. one that reverted and
            could otherwise run later once conditions change) ever runs.
    @param new_nonce The nonce the next signed action must carry; above the
           current one and at most 2**64 - 1.
    """
    self._invalidate_nonces(msg.sender, self._accounts[msg.sender] >> 128, new_nonce)


@external
def invalidate_nonces_with_signature(
    holder: address, nonce: uint256, new_nonce: uint256, deadline: uint256, signature: Bytes[65]
):
    """
    @notice `invalidate_nonces` on the holder's EIP-712 signature of
            `InvalidateNonces(address holder,uint256 nonce,uint256
            newNonce,uint256 deadline)` at its current nonce; anyone may
            submit it. `new_nonce` is above `nonce`: `nonce + 1` voids just
            the signature pending at `nonce`.
    @custom:security As `create_gift_with_signature`. Allowed while paused.
    """
    self._check_holder_signature(
        holder,
        keccak256(abi_encode(INVALIDATE_NONCES_TYPEHASH, holder, nonce, new_nonce, deadline)),
        nonce,
        deadline,
        signature,
    )
    self._invalidate_nonces(holder, nonce, new_nonce)


# --------------------------------------------------------------- issuance


@external
def issue_lot(
    custodian: address,
    bottle_count: uint256,
    vintage: uint256,
    volume_ml: uint256,
    bottling_date: uint256,
    metadata_hash: bytes32,
    tag_root: bytes32,
    producer: String[64],
    wine: String[96],
    region: String[96],
    metadata_uri: String[256],
) -> uint256:
    """
    @notice Issuer: issue a production lot of `bottle_count` bottles, one
            certificate each, all owned by the issuer until sold. The cost
            does not depend on `bottle_count`.
    @param custodian The registered custodian holding the bottles.
    @param bottle_count Bottles in the lot, 1 to `MAX_BOTTLES_PER_LOT`.
    @param vintage Harvest year, or 0 for a non-vintage wine.
    @param volume_ml Bottle volume in millilitres.
    @param bottling_date Unix time of bottling.
    @param metadata_hash keccak256 of the lot's metadata document.
    @param tag_root Merkle root of the bottles' tag commitments; a leaf is
           keccak256(keccak256(abi.encode(uint256 serial, address tag))).
    @param producer Producer name, emitted in `LotIssued`.
    @param wine Wine name, emitted in `LotIssued`.
    @param region Region or appellation, emitted in `LotIssued`.
    @param metadata_uri Where the metadata document lives.
    @return uint256 The new lot id.
    """
    pausable._require_not_paused()
    assert self.is_issuer[msg.sender], "certificate: caller is not an issuer"
    self._require_registered_custodian(custodian)
    assert bottle_count != 0, "certificate: lot has no bottles"
    assert bottle_count <= MAX_BOTTLES_PER_LOT, "certificate: lot exceeds MAX_BOTTLES_PER_LOT"
    assert vintage <= _U16, "certificate: vintage out of range"
    assert volume_ml != 0 and volume_ml <= _U32, "certificate: volume out of range"
    assert bottling_date <= _U48, "certificate: bottling date out of range"
    assert tag_root != empty(bytes32), "certificate: tag root is empty"

    counts: uint256 = self._counts
    lot_id: uint256 = (counts & _U128) + 1
    assert lot_id <= _MAX_LOT_ID, "certificate: lot ids exhausted"
    self._counts = counts + 1 + (bottle_count << 128)

    self._lot_a[lot_id] = (
        convert(msg.sender, uint256) | (bottle_count << 160) | (vintage << 192) | (volume_ml << 208)
    )
    self._lot_b[lot_id] = (
        convert(custodian, uint256) | (bottling_date << 160) | (block.timestamp << 208)
    )
    self._lot_metadata_hash[lot_id] = metadata_hash
    self._lot_tag_root[lot_id] = tag_root
    self._accounts[msg.sender] += bottle_count

    first: uint256 = (lot_id << SERIAL_BITS) | 1
    log ConsecutiveTransfer(
        fromTokenId=first,
        toTokenId=first + bottle_count - 1,
        fromAddress=empty(address),
        toAddress=msg.sender,
    )
    log LotIssued(
        lot_id=lot_id,
        issuer=msg.sender,
        custodian=custodian,
        first_token_id=first,
        bottle_count=bottle_count,
        vintage=vintage,
        volume_ml=volume_ml,
        bottling_date=bottling_date,
        metadata_hash=metadata_hash,
        tag_root=tag_root,
        producer=producer,
        wine=wine,
        region=region,
        metadata_uri=metadata_uri,
    )
    return lot_id


@external
@view
@reentrant
def lot_count() -> uint256:
    """
    @notice How many lots have been issued; lot ids run from 1 to this.
    """
    return self._counts & _U128


@external
@view
@reentrant
def totalSupply() -> uint256:
    """
    @notice Certificates in existence (issued and not redeemed).
    """
    return self._counts >> 128


@external
@pure
@reentrant
def token_id_of(lot_id: uint256, serial: uint256) -> uint256:
    """
    @notice The token id of bottle `serial` (from 1) of lot `lot_id`.
    """
    assert serial != 0 and serial <= _SERIAL_MASK, "certificate: serial out of range"
    assert lot_id <= _MAX_LOT_ID, "certificate: lot id out of range"
    return (lot_id << SERIAL_BITS) | serial


@external
@view
@reentrant
def lot(lot_id: uint256) -> Lot:
    """
    @notice Everything stored about a lot. Reverts if it does not exist.
    """
    return self._lot(lot_id)


# ----------------------------------------------------------- verification


@external
@view
@reentrant
def certificate(token_id: uint256) -> Certificate:
    """
    @notice Everything a verifier needs about one certificate in one call:
            whether it exists, its owner and lifecycle state, its lot's
            facts, and who issued it and holds the bottle (with the names
            the admin registered and whether those roles are still held).
            Never reverts: a token that was never issued answers
            `exists = False` with the other fields empty.
    """
    result: Certificate = empty(Certificate)
    result.token_id = token_id
    if not self._issued(token_id):
        return result
    lot_id: uint256 = token_id >> SERIAL_BITS
    word: uint256 = self._tokens[token_id]
    l: Lot = self._lot(lot_id)
    result.lot_id = lot_id
    result.serial = token_id & _SERIAL_MASK
    result.state = self._state(word)
    detail: uint256 = self._details[token_id]
    if word == 0:
        result.owner = l.issuer
    elif result.state == REDEEMED:
        result.redeemed_by = convert(word & _ADDRESS_MASK, address)
        result.redeemed_at = word >> 168
    else:
        result.owner = convert(word & _ADDRESS_MASK, address)
    if result.state == FLAGGED:
        result.flag_reason_hash = convert(detail, bytes32)
        result.flagged_by_issuer = (word >> 160) & convert(_FLAGGED_BY_ISSUER, uint256) != 0
    elif result.state == GIFT_PENDING:
        result.gift_claim_key = convert(detail & _ADDRESS_MASK, address)
        result.gift_expiry = detail >> 160
    elif result.state == REDEMPTION_REQUESTED or result.state == REDEEMED:
        result.redemption_order_hash = convert(detail, bytes32)
    result.exists = result.state != REDEEMED
    result.locked = result.state != ACTIVE
    result.issuer = l.issuer
    result.issuer_name = self.party_name[l.issuer]
    result.issuer_active = self.is_issuer[l.issuer]
    result.custodian = l.custodian
    result.custodian_name = self.party_name[l.custodian]
    result.custodian_active = self.is_custodian[l.custodian]
    result.bottle_count = l.bottle_count
    result.vintage = l.vintage
    result.volume_ml = l.volume_ml
    result.bottling_date = l.bottling_date
    result.issued_at = l.issued_at
    result.metadata_hash = l.metadata_hash
    result.tag_root = l.tag_root
    return result


@external
@view
@reentrant
def custodian_of(token_id: uint256) -> address:
    """
    @notice The custodian keeping this bottle: its lot's current one (also
            for a redeemed bottle). The zero address for a token never
            issued. `CustodyRegistry` reads it.
    """
    if not self._issued(token_id):
        return empty(address)
    return self._lot_custodian(token_id)


@external
@view
@reentrant
def verify_tag(token_id: uint256, tag: address, proof: DynArray[bytes32, MAX_PROOF_DEPTH]) -> bool:
    """
    @notice Whether `tag` is the tag commitment of this bottle: the address
            of the key held by the bottle's physical tag, proven against the
            lot's Merkle root. False for a token that does not exist.
    @dev Leaf = keccak256(keccak256(abi.encode(uint256 serial, address tag)));
         the double hash keeps a leaf from ever equalling an inner node.
         This proves which tag belongs to the bottle, not that the tag is
         present: a tag address is public. `verify_tag_signature` proves
         possession of the tag's key.
    """
    return self._verify_tag(token_id, tag, proof)


@external
@view
@reentrant
def verify_tag_signature(
    token_id: uint256, block_number: uint256, signature: Bytes[65], proof: DynArray[bytes32, MAX_PROOF_DEPTH]
) -> bool:
    """
    @notice Proof of possession: whether the bottle's physical tag signed
            a fresh challenge for this bottle. The challenge is the EIP-712
            message `TagChallenge(uint256 tokenId,uint256 blockNumber,bytes32
            blockHash)` in this contract's domain, over a block at most
            `TAG_CHALLENGE_WINDOW` blocks before the current one (and not
            the current one, whose hash is not known yet). The key that
            signed it must be the tag commitment the lot's Merkle root holds
            for this serial (`proof` as for `verify_tag`). False otherwise.
    @dev The block hash binds the answer to a recent moment, so a recorded
         answer stops passing after the window; the token id and the
         serial in the leaf bind it to one bottle; the domain binds it to
         this chain and contract.
    @custom:security A tag signature never authorises anything here: the
                     view only reports. Replay: a copied answer passes
                     only for the same bottle within the window, which is
                     why the verifier issues the block and checks the
                     answer at once. Malleability is harmless (the check
                     is stateless); a high-s, malformed or unrecoverable
                     signature answers false, it does not revert.
    """
    if block_number >= block.number or block.number - block_number > TAG_CHALLENGE_WINDOW:
        return False
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(TAG_CHALLENGE_TYPEHASH, token_id, block_number, blockhash(block_number)))
    )
    tag: address = self._recover(digest, signature)
    if tag == empty(address):
        return False
    return self._verify_tag(token_id, tag, proof)


# ------------------------------------------------------------------ gifts


@external
def create_gift(token_id: uint256, claim_key: address, expiry: uint256):
    """
    @notice Holder: gift a certificate by claim link. Make a fresh random
            key, pass its address here as `claim_key`, and send its secret
            to the recipient (link or QR code). The certificate locks
            (ERC-5192) until the recipient claims it with `claim_gift`, the
            holder revokes it, or it expires and anyone revokes it.
    @param claim_key The address of the gift's one-time claim key; a key
           that was ever given to a gift, this one or another, is refused.
    @param expiry Unix time after which the gift can no longer be claimed.
    @custom:security Privilege: only the holder (not an approved operator)
                     may lock its certificate in a gift. Front-running:
                     someone who copies `claim_key` from the mempool can
                     only spend gas making the holder pick a new key.
                     Replay: the key is burned here, so it never claims a
                     second gift. Stopped while paused.
    """
    self._create_gift(msg.sender, token_id, claim_key, expiry)


@external
def create_gift_with_signature(
    holder: address,
    token_id: uint256,
    claim_key: address,
    expiry: uint256,
    nonce: uint256,
    deadline: uint256,
    signature: Bytes[65],
):
    """
    @notice `create_gift` on the holder's EIP-712 signature of
            `CreateGift(address holder,uint256 tokenId,address claimKey,uint256
            expiry,uint256 nonce,uint256 deadline)`; anyone may submit it.
    @custom:security As `transfer_with_signature`: the domain binds chain
                     and contract, the sequential nonce is consumed, the
                     deadline bounds it, ECDSA refuses high-s, holders
                     with code answer ERC-1271. The relayer cannot change
                     the claim key or expiry without breaking the signature.
    """
    self._check_holder_signature(
        holder,
        keccak256(abi_encode(CREATE_GIFT_TYPEHASH, holder, token_id, claim_key, expiry, nonce, deadline)),
        nonce,
        deadline,
        signature,
    )
    self._create_gift(holder, token_id, claim_key, expiry)


@external
def claim_gift(token_id: uint256, recipient: address, signature: Bytes[65]):
    """
    @notice Claim a pending gift for `recipient`: `signature` is the claim
            key's EIP-712 signature of `ClaimGift(uint256 tokenId,address
            recipient)`. Anyone may submit it (the relayer pays the gas).
            The certificate moves to `recipient` and unlocks. A contract
            recipient must accept it through `onERC721Received`.
    @dev The claim key is accepted for one gift ever (`claim_key_used`),
         so the key and the token id name this gift; no nonce is needed.
         A claim key is an ordinary key: its signature is checked by ECDSA
         only (no ERC-1271).
         The receiver is called last, after every state change, with the
         holder as operator and sender (the gift is the holder's act).
    @custom:security Front-running: the signature covers the recipient, so
                     whoever copies it from the mempool can only deliver
                     the certificate to that recipient. Replay: a claimed
                     or revoked gift leaves `GIFT_PENDING`, and its key can
                     never be given to a new gift. Expiry: refused after
                     `expiry`. Malleability: an alternative encoding of the
                     same signature claims for the same recipient only;
                     high-s is refused. Re-entrancy: every state-changing
                     function is non-reentrant, so the receiver hook cannot
                     call back in. Stopped while paused.
    """
    pausable._require_not_paused()
    assert recipient != empty(address), "certificate: transfer to the zero address"
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    self._require_state(word, GIFT_PENDING)
    gift: uint256 = self._details[token_id]
    assert block.timestamp <= gift >> 160, "certificate: gift expired"
    claim_key: address = convert(gift & _ADDRESS_MASK, address)
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(CLAIM_GIFT_TYPEHASH, token_id, recipient))
    )
    assert self._recover(digest, signature) == claim_key, "certificate: invalid claim signature"
    self._set_state(token_id, owner, word, ACTIVE)
    self._move(owner, recipient, token_id, word)
    log GiftClaimed(token_id=token_id, holder=owner, recipient=recipient, claim_key=claim_key)
    self._check_receiver(owner, owner, recipient, token_id, b"")


@external
def revoke_gift(token_id: uint256):
    """
    @notice Cancel a pending gift: the certificate unlocks and stays with
            its holder. The holder may revoke at any time before a claim;
            once the gift has expired anyone may, so an expired gift never
            leaves a certificate locked. Allowed while paused.
    @custom:security A stranger can revoke only an expired gift, which can
                     no longer be claimed anyway; the certificate stays
                     with its holder. The claim key stays burned.
    """
    self._revoke_gift(msg.sender, token_id)


@external
def revoke_gift_with_signature(
    holder: address, token_id: uint256, nonce: uint256, deadline: uint256, signature: Bytes[65]
):
    """
    @notice `revoke_gift` on the holder's EIP-712 signature of
            `RevokeGift(address holder,uint256 tokenId,uint256 nonce,uint256
            deadline)`; anyone may submit it.
    @custom:security As `create_gift_with_signature`.
    """
    self._check_holder_signature(
        holder, keccak256(abi_encode(REVOKE_GIFT_TYPEHASH, holder, token_id, nonce, deadline)), nonce, deadline, signature
    )
    self._revoke_gift(holder, token_id)


# ------------------------------------------------------------- redemption


@external
def request_redemption(token_id: uint256, order_hash: bytes32):
    """
    @notice Holder: ask for the physical bottle. `order_hash` is keccak256
            of the delivery order (address, carrier, any custodian fee
            receipt), which the holder gives the custodian off chain. The
            certificate locks until the lot's custodian ships the bottle
            (`confirm_redemption`, which burns it) or rejects the request.
            A flagged or pledged certificate cannot be redeemed.
    @dev Custodian fee: pay it with `UtilityToken.pay(custodian, amount,
         order_hash)`; the custodian finds the payment by the order hash
         and rejects an unpaid request. The certificate takes no payment.
    @custom:security Privilege: only the holder. Stopped while paused. The
                     holder cannot withdraw the request (the bottle may
                     already be on its way): the custodian answers it.
    """
    self._request_redemption(msg.sender, token_id, order_hash)


@external
def request_redemption_with_signature(
    holder: address, token_id: uint256, order_hash: bytes32, nonce: uint256, deadline: uint256, signature: Bytes[65]
):
    """
    @notice `request_redemption` on the holder's EIP-712 signature of
            `RequestRedemption(address holder,uint256 tokenId,bytes32
            orderHash,uint256 nonce,uint256 deadline)`; anyone may submit it.
    @custom:security As `create_gift_with_signature`; the relayer cannot
                     change the order hash.
    """
    self._check_holder_signature(
        holder,
        keccak256(abi_encode(REQUEST_REDEMPTION_TYPEHASH, holder, token_id, order_hash, nonce, deadline)),
        nonce,
        deadline,
        signature,
    )
    self._request_redemption(holder, token_id, order_hash)


@external
def confirm_redemption(token_id: uint256):
    """
    @notice The lot's custodian: the bottle has been shipped. The
            certificate is burned (`Transfer` to the zero address, the
            holder's balance and the supply drop) and its record stays:
            `certificate` and `state_of` answer `REDEEMED` with the time,
            the custodian and the order hash.
    @custom:security Privilege: only the lot's current custodian, while it
                     holds the custodian role (a revoked custodian cannot
                     burn; the admin moves its lots first). Only a
                     requested redemption can be confirmed. No external
                     call. Stopped while paused.
    """
    pausable._require_not_paused()
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    self._check_custodian(token_id)
    self._require_state(word, REDEMPTION_REQUESTED)
    self._tokens[token_id] = (
        convert(msg.sender, uint256) | (convert(REDEEMED, uint256) << 160) | (block.timestamp << 168)
    )
    self._accounts[owner] -= 1
    self._counts -= 1 << 128
    log Transfer(sender=owner, receiver=empty(address), token_id=token_id)
    # The record stays and its metadata now shows the redemption: ERC-4906.
    log MetadataUpdate(_tokenId=token_id)
    # The order hash was emitted in `RedemptionRequested` and stays in `certificate`;
    # reading it again for this event would cost a cold storage read.
    log CertificateRedeemed(token_id=token_id, holder=owner, custodian=msg.sender)


@external
def reject_redemption(token_id: uint256, reason_hash: bytes32):
    """
    @notice The lot's custodian: refuse a redemption request (unpaid fee,
            undeliverable address); the certificate unlocks and stays with
            its holder. Allowed while paused.
    @param reason_hash keccak256 of the custodian's explanation.
    @custom:security Privilege: only the lot's current custodian while it
                     holds the role; it can only return the certificate to
                     its holder.
    """
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    self._check_custodian(token_id)
    self._require_state(word, REDEMPTION_REQUESTED)
    self._set_state(token_id, owner, word, ACTIVE)
    log RedemptionRejected(token_id=token_id, custodian=msg.sender, reason_hash=reason_hash)


# ---------------------------------------------------------------- lending


@external
def set_lending(lending_: address):
    """
    @notice Admin: name the lending contract that may pledge and release
            certificates. Once only: it cannot be changed afterwards.
    @custom:security Set once so that no later admin key can swap in a
                     contract that pledges and forecloses certificates
                     without their holders' consent; the wired contract's
                     code is public and pledges only on a holder's
                     acceptance of a loan. A new lending contract needs a
                     new certificate deployment. Only a contract (code at
                     the address) is accepted, so the admin's own key can
                     never be the lending contract; the deployment wires
                     `PledgeLending` in the same run that deploys this
                     contract (`amphora.deploy`).
    """
    ownable._check_owner()
    assert self.lending == empty(address), "certificate: lending already set"
    assert lending_.is_contract, "certificate: lending is not a contract"
    self.lending = lending_
    log LendingSet(lending=lending_)


@external
def pledge(token_id: uint256, holder: address):
    """
    @notice The lending contract: lock `holder`'s active certificate as
            loan collateral. It stays recorded as the holder's but cannot
            be transferred, gifted, flagged or redeemed until `release`.
            Only collateral in good standing: active (so not flagged,
            gift pending, redemption requested or already pledged), and
            its lot in the custody of a registered custodian.
    @custom:security Privilege: the lending contract only, which checks
                     the holder's acceptance of the loan. Stopped while
                     paused. No external call.
    """
    pausable._require_not_paused()
    assert msg.sender == self.lending, "certificate: caller is not the lending contract"
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    assert owner == holder, "certificate: borrower is not the holder"
    self._require_state(word, ACTIVE)
    self._require_registered_custodian(self._lot_custodian(token_id))
    self._set_state(token_id, owner, word, PLEDGED)
    log CertificatePledged(token_id=token_id, holder=owner)


@external
def release(token_id: uint256, receiver: address) -> address:
    """
    @notice The lending contract: unlock a pledged certificate, for its
            holder (`receiver` zero or the holder: the loan was repaid;
            allowed while paused) or moved to `receiver` (the lender, who
            foreclosed; stopped while paused, as every transfer is).
    @return address The holder (the borrower) before the release.
    @dev No receiver hook on foreclosure: the lender chose to lend and
         receives the certificate as by `transferFrom`; calling out here
         would only open a re-entrancy path.
    """
    assert msg.sender == self.lending, "certificate: caller is not the lending contract"
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    self._require_state(word, PLEDGED)
    self._set_state(token_id, owner, word, ACTIVE)
    to: address = owner
    if receiver != empty(address) and receiver != owner:
        pausable._require_not_paused()
        self._move(owner, receiver, token_id, word)
        to = receiver
    log CertificateReleased(token_id=token_id, holder=owner, receiver=to)
    return owner


# ---------------------------------------------------------------- custody


@external
def move_custody(lot_id: uint256, custodian: address):
    """
    @notice Admin: record that a whole lot's bottles moved to another
            registered custodian (bottles of a lot are stored and moved
            together). `certificate` then names the new custodian, which
            alone may confirm redemptions and (in `CustodyRegistry`)
            attest the lot's storage.
            Allowed while paused (moving bottles may be the emergency).
    @custom:security Privilege: the admin only; it moves custody of
                     bottles, never ownership of certificates.
    @dev Emits ERC-4906 `BatchMetadataUpdate` over the lot's token ids.
    """
    ownable._check_owner()
    b: uint256 = self._lot_b[lot_id]
    assert b != 0, "certificate: lot does not exist"
    self._require_registered_custodian(custodian)
    previous: address = convert(b & _ADDRESS_MASK, address)
    assert custodian != previous, "certificate: lot is already with this custodian"
    self._lot_b[lot_id] = ((b >> 160) << 160) | convert(custodian, uint256)
    log CustodyMoved(lot_id=lot_id, previous_custodian=previous, custodian=custodian)
    # Every bottle's metadata names its custodian: ERC-4906 over the lot.
    first: uint256 = (lot_id << SERIAL_BITS) | 1
    log BatchMetadataUpdate(
        _fromTokenId=first, _toTokenId=first + ((self._lot_a[lot_id] >> 160) & _U32) - 1
    )


# ------------------------------------------------------------------ flags


@external
def flag(token_id: uint256, reason_hash: bytes32):
    """
    @notice Report a certificate lost or stolen: its holder or its lot's
            acting issuer may. The acting issuer is the successor the
            admin named for the lot (`name_successor_issuer`), else the
            lot's issuer, and only while it holds the issuer role. The
            certificate locks (ERC-5192) until the acting issuer or the
            admin clears the flag; `certificate` shows the reason hash and
            whether the (acting) issuer raised it. Allowed while paused.
    @param reason_hash keccak256 of the report (police reference, notes).
    @custom:security Privilege: holder or issuer; a flag only locks. Only
                     an active certificate can be flagged (revoke a gift
                     first). A pledged one cannot: the pledge already
                     keeps it from moving, and the lender's collateral
                     must not change state under an open loan; it can be
                     flagged once repaid or foreclosed.
    """
    self._flag(msg.sender, token_id, reason_hash)


@external
def flag_with_signature(
    holder: address, token_id: uint256, reason_hash: bytes32, nonce: uint256, deadline: uint256, signature: Bytes[65]
):
    """
    @notice `flag` by the holder on its EIP-712 signature of
            `Flag(address holder,uint256 tokenId,bytes32 reasonHash,uint256
            nonce,uint256 deadline)`; anyone may submit it. Allowed while
            paused.
    @custom:security As `create_gift_with_signature`.
    """
    self._check_holder_signature(
        holder,
        keccak256(abi_encode(FLAG_TYPEHASH, holder, token_id, reason_hash, nonce, deadline)),
        nonce,
        deadline,
        signature,
    )
    self._flag(holder, token_id, reason_hash)


@external
def clear_flag(token_id: uint256):
    """
    @notice The lot's acting issuer (see `flag`) after its own checks, or
            the admin: clear a lost or stolen flag; the certificate
            unlocks. Allowed while paused.
    @custom:security Trust: the admin can unlock a flagged certificate
                     (never move it), so a flag outlives the issuer that
                     raised it or a lost issuer key; an issuer whose role
                     was revoked can no longer clear (nor raise) a flag.
    """
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    assert msg.sender == self._acting_issuer(token_id) or msg.sender == ownable.owner, (
        "certificate: caller is not the issuer"
    )
    self._require_state(word, FLAGGED)
    self._set_state(token_id, owner, word, ACTIVE)
    log FlagCleared(token_id=token_id, by=msg.sender)


@external
def name_successor_issuer(lot_id: uint256, successor: address):
    """
    @notice Admin: name a registered issuer to act for a lot's issuer (a
            winery that was taken over, or lost its key): it may then flag
            the lot's bottles and clear their flags, and the lot's own
            issuer no longer may. Zero withdraws the nomination. The lot's
            `issuer` (who issued it) does not change. Allowed while paused.
    @custom:security Privilege: the admin only; a successor can only lock
                     or unlock certificates, never move them.
    """
    ownable._check_owner()
    assert self._lot_a[lot_id] != 0, "certificate: lot does not exist"
    assert successor == empty(address) or self.is_issuer[successor], "certificate: successor is not an issuer"
    self.successor_issuer[lot_id] = successor
    log SuccessorIssuerNamed(lot_id=lot_id, successor=successor)


# ------------------------------------------------------------------ roles


@external
def grant_issuer(account: address, name: String[64]):
    """
    @notice Admin: register a winery that may issue lots, under `name`.
    """
    self._register_party(account, name)
    self.is_issuer[account] = True
    log IssuerGranted(account=account, name=name)


@external
def revoke_issuer(account: address):
    """
    @notice Admin: stop an issuer from issuing new lots, flagging and
            clearing flags. Its certificates stay valid; `certificate`
            reports `issuer_active = False`; the admin clears flags of its
            lots, or names a successor issuer for them.
    """
    ownable._check_owner()
    assert self.is_issuer[account], "certificate: account is not an issuer"
    self.is_issuer[account] = False
    log IssuerRevoked(account=account)


@external
def grant_custodian(account: address, name: String[64]):
    """
    @notice Admin: register a cellar or warehouse that may hold lots.
    """
    self._register_party(account, name)
    self.is_custodian[account] = True
    log CustodianGranted(account=account, name=name)


@external
def revoke_custodian(account: address):
    """
    @notice Admin: stop a custodian from taking new lots.
    """
    ownable._check_owner()
    assert self.is_custodian[account], "certificate: account is not a custodian"
    self.is_custodian[account] = False
    log CustodianRevoked(account=account)


@external
def pause():
    """
    @notice Admin: stop issuance and all transfers in an emergency.
    """
    ownable._check_owner()
    pausable._pause()


@external
def unpause():
    """
    @notice Admin: resume issuance and transfers.
    """
    ownable._check_owner()
    pausable._unpause()


# --------------------------------------------------------------- internals


@internal
@view
def _require_registered_custodian(custodian: address):
    """
    @dev One revert string for `issue_lot` and `move_custody`.
    """
    assert self.is_custodian[custodian], "certificate: custodian is not registered"


@internal
def _register_party(account: address, name: String[64]):
    """
    @dev Admin only: record the name under which an issuer or custodian
         is shown.
    """
    ownable._check_owner()
    assert account != empty(address), "certificate: account is the zero address"
    assert len(name) != 0, "certificate: name is empty"
    self.party_name[account] = name


@internal
@view
def _owner_of(token_id: uint256) -> (address, uint256):
    """
    @dev The owner and the token word of an existing token; reverts if
         the token was never issued or has been redeemed. An untouched
         token has word zero and belongs to its lot's issuer.
    """
    word: uint256 = self._tokens[token_id]
    if word == 0:
        if self._issued(token_id):
            return self._lot_issuer(token_id), 0
    elif self._state(word) != REDEEMED:
        return convert(word & _ADDRESS_MASK, address), word
    raise "certificate: token does not exist"


@internal
@pure
def _state(word: uint256) -> uint8:
    """
    @dev The low four bits of the state byte; bit 4 marks an issuer's flag.
    """
    return convert((word >> 160) & 15, uint8)


@internal
@view
def _approved(token_id: uint256, word: uint256) -> address:
    """
    @dev The approval counts only if it carries the token's current epoch.
    """
    approval: uint256 = self._approvals[token_id]
    if approval >> 160 != word >> 168:
        return empty(address)
    return convert(approval & _ADDRESS_MASK, address)


@internal
@pure
def _require_state(word: uint256, expected: uint8):
    """
    @dev Reverts with a message that names the current state.
    """
    state: uint8 = self._state(word)
    if state == expected:
        return
    # One raise with the state's name costs less code than one per state.
    name: String[20] = "in an unknown state"
    if state == ACTIVE:
        name = "active"
    elif state == GIFT_PENDING:
        name = "gift pending"
    elif state == PLEDGED:
        name = "pledged"
    elif state == REDEMPTION_REQUESTED:
        name = "redemption requested"
    elif state == FLAGGED:
        name = "flagged"
    raise concat("certificate: token is ", name)


@internal
def _set_state(token_id: uint256, owner: address, word: uint256, new_state: uint8):
    """
    @dev The one place a live certificate changes lifecycle state. Emits
         the ERC-5192 `Locked` or `Unlocked` event when lockedness changes.
         Keeps the owner and the approval epoch. Emits ERC-4906
         `MetadataUpdate`, since the metadata JSON shows the state. (A burn is not a state
         change of a live certificate: `confirm_redemption` writes the
         redeemed record itself, from one locked state to another.)
    """
    old_state: uint8 = self._state(word)
    self._tokens[token_id] = (
        convert(owner, uint256) | (convert(new_state, uint256) << 160) | ((word >> 168) << 168)
    )
    if old_state == ACTIVE and new_state != ACTIVE:
        log Locked(tokenId=token_id)
    elif old_state != ACTIVE and new_state == ACTIVE:
        log Unlocked(tokenId=token_id)
    # The metadata JSON shows the state: ERC-4906.
    log MetadataUpdate(_tokenId=token_id)


@internal
@view
def _issued(token_id: uint256) -> bool:
    """
    @dev Whether the token id names a bottle of an issued lot (redeemed
         or not).
    """
    serial: uint256 = token_id & _SERIAL_MASK
    return serial != 0 and serial <= (self._lot_a[token_id >> SERIAL_BITS] >> 160) & _U32


@internal
@view
def _lot_issuer(token_id: uint256) -> address:
    return convert(self._lot_a[token_id >> SERIAL_BITS] & _ADDRESS_MASK, address)


@internal
@view
def _acting_issuer(token_id: uint256) -> address:
    """
    @dev Who may flag the token's bottles and clear their flags: the lot's
         named successor, else its issuer; zero unless it holds the role.
    """
    issuer: address = self.successor_issuer[token_id >> SERIAL_BITS]
    if issuer == empty(address):
        issuer = self._lot_issuer(token_id)
    if self.is_issuer[issuer]:
        return issuer
    return empty(address)


@internal
@view
def _lot(lot_id: uint256) -> Lot:
    a: uint256 = self._lot_a[lot_id]
    assert a != 0, "certificate: lot does not exist"
    b: uint256 = self._lot_b[lot_id]
    count: uint256 = (a >> 160) & _U32
    return Lot(
        lot_id=lot_id,
        issuer=convert(a & _ADDRESS_MASK, address),
        custodian=convert(b & _ADDRESS_MASK, address),
        bottle_count=count,
        vintage=(a >> 192) & _U16,
        volume_ml=(a >> 208) & _U32,
        bottling_date=(b >> 160) & _U48,
        issued_at=b >> 208,
        metadata_hash=self._lot_metadata_hash[lot_id],
        tag_root=self._lot_tag_root[lot_id],
        first_token_id=(lot_id << SERIAL_BITS) | 1,
        last_token_id=(lot_id << SERIAL_BITS) | count,
    )


@internal
def _transfer(_from: address, _to: address, token_id: uint256, spender: address):
    """
    @dev Moves an active token after checking the spender's authority.
         Bumps the token's epoch, which voids any single-token approval.
    """
    pausable._require_not_paused()
    assert _to != empty(address), "certificate: transfer to the zero address"
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    assert owner == _from, "certificate: transfer from incorrect owner"
    self._require_state(word, ACTIVE)
    if spender != owner and not self.isApprovedForAll[owner][spender]:
        assert self._approved(token_id, word) == spender, "certificate: caller is not token owner or approved"
    self._move(_from, _to, token_id, word)


@internal
def _move(_from: address, _to: address, token_id: uint256, word: uint256):
    """
    @dev Gives the token to `_to` in the active state. Bumps the token's
         epoch, which voids any single-token approval.
    """
    epoch: uint256 = unsafe_add(word >> 168, 1) & _U88
    self._tokens[token_id] = convert(_to, uint256) | (epoch << 168)
    self._accounts[_from] -= 1
    self._accounts[_to] += 1
    log Transfer(sender=_from, receiver=_to, token_id=token_id)


@internal
def _check_holder_signature(
    holder: address, struct_hash: bytes32, nonce: uint256, deadline: uint256, signature: Bytes[65]
):
    """
    @dev The one check of a holder's EIP-712 signature, for every signed
         form: the deadline, the holder's sequential nonce, then ECDSA
         (high-s refused), else ERC-1271 if the holder has code. ECDSA
         comes first so that an EOA with an EIP-7702 delegation (which
         has code) still signs with its key. Consumes the nonce, which
         shares a word with the holder's balance.
    """
    assert block.timestamp <= deadline, "certificate: signature expired"
    assert holder != empty(address), "certificate: signer is the zero address"
    account: uint256 = self._accounts[holder]
    assert nonce == account >> 128, "certificate: invalid nonce"
    digest: bytes32 = eip712_domain_separator._hash_typed_data_v4(struct_hash)
    assert self._recover(digest, signature) == holder or (
        holder.is_contract and signature_checker._is_valid_ERC1271_signature_now(holder, digest, signature)
    ), "certificate: invalid signature"
    self._accounts[holder] = account + (1 << 128)


@internal
def _invalidate_nonces(holder: address, previous: uint256, new_nonce: uint256):
    """
    @dev Sets the holder's nonce to `new_nonce`, which must exceed the
         nonce `previous` the holder had when it asked.
    """
    assert new_nonce > previous and new_nonce <= _U64, "certificate: nonce out of range"
    self._accounts[holder] = (self._accounts[holder] & _U128) | (new_nonce << 128)
    log NoncesInvalidated(holder=holder, nonce=new_nonce)


@internal
def _lock_by_holder(actor: address, token_id: uint256, new_state: uint8, detail: uint256) -> address:
    """
    @dev The holder locks its active certificate for a gift or a
         redemption (both stopped while paused), with the lock's detail
         word. Returns the holder.
    """
    pausable._require_not_paused()
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    assert actor == owner, "certificate: caller is not the holder"
    self._require_state(word, ACTIVE)
    self._details[token_id] = detail
    self._set_state(token_id, owner, word, new_state)
    return owner


@internal
def _create_gift(actor: address, token_id: uint256, claim_key: address, expiry: uint256):
    """
    @dev `actor` (the caller, or the holder who signed) gifts `token_id`:
         burns the claim key for good, then locks with key | expiry as the
         detail word.
    """
    assert claim_key != empty(address), "certificate: claim key is the zero address"
    assert not self.claim_key_used[claim_key], "certificate: claim key already used"
    assert expiry > block.timestamp and expiry <= _U64, "certificate: gift expiry out of range"
    self.claim_key_used[claim_key] = True
    owner: address = self._lock_by_holder(actor, token_id, GIFT_PENDING, convert(claim_key, uint256) | (expiry << 160))
    log GiftCreated(token_id=token_id, holder=owner, claim_key=claim_key, expiry=expiry)


@internal
def _revoke_gift(actor: address, token_id: uint256):
    """
    @dev The holder may revoke at any time; anyone once `expiry` has passed
         (a claim is still accepted at `expiry` itself).
    """
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    self._require_state(word, GIFT_PENDING)
    assert actor == owner or block.timestamp > self._details[token_id] >> 160, (
        "certificate: caller is not the holder"
    )
    self._set_state(token_id, owner, word, ACTIVE)
    log GiftRevoked(token_id=token_id, holder=owner, by=actor)


@internal
def _request_redemption(actor: address, token_id: uint256, order_hash: bytes32):
    """
    @dev Locks with the order hash as the detail word and names the lot's
         custodian in the event, so a custodian can follow its requests.
    """
    assert order_hash != empty(bytes32), "certificate: order hash is empty"
    owner: address = self._lock_by_holder(actor, token_id, REDEMPTION_REQUESTED, convert(order_hash, uint256))
    log RedemptionRequested(
        token_id=token_id, holder=owner, custodian=self._lot_custodian(token_id), order_hash=order_hash
    )


@internal
def _flag(actor: address, token_id: uint256, reason_hash: bytes32):
    """
    @dev Locks with the reason hash as the detail word; bit 4 of the state
         byte records that the lot's acting issuer raised the flag.
    """
    owner: address = empty(address)
    word: uint256 = empty(uint256)
    owner, word = self._owner_of(token_id)
    issuer: address = self._acting_issuer(token_id)
    assert actor == owner or actor == issuer, "certificate: caller is not the holder or the issuer"
    self._require_state(word, ACTIVE)
    self._details[token_id] = convert(reason_hash, uint256)
    new_state: uint8 = FLAGGED
    if actor == issuer:
        new_state = FLAGGED | _FLAGGED_BY_ISSUER
    self._set_state(token_id, owner, word, new_state)
    log CertificateFlagged(token_id=token_id, by=actor, reason_hash=reason_hash)


@internal
@view
def _check_custodian(token_id: uint256):
    """
    @dev The caller must be the custodian of the token's lot (any token
         id of the lot) and still hold the custodian role.
    """
    assert msg.sender == self._lot_custodian(token_id) and self.is_custodian[msg.sender], (
        "certificate: caller is not the custodian"
    )


@internal
@view
def _lot_custodian(token_id: uint256) -> address:
    """
    @dev The current custodian of the token's lot (zero for no lot).
    """
    return convert(self._lot_b[token_id >> SERIAL_BITS] & _ADDRESS_MASK, address)


@internal
@view
def _verify_tag(token_id: uint256, tag: address, proof: DynArray[bytes32, MAX_PROOF_DEPTH]) -> bool:
    """
    @dev Whether `tag` is the commitment of this serial under its lot's
         tag root; false for a token never issued.
    """
    if not self._issued(token_id):
        return False
    lot_id: uint256 = token_id >> SERIAL_BITS
    serial: uint256 = token_id & _SERIAL_MASK
    leaf: bytes32 = keccak256(abi_encode(keccak256(abi_encode(serial, tag))))
    return merkle_proof_verification._verify(proof, self._lot_tag_root[lot_id], leaf)


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @dev The ECDSA signer of `digest`, or zero for a signature that is
         malformed, high-s (EIP-2) or unrecoverable: never reverts.
         65-byte `r || s || v` or 64-byte EIP-2098 `r || vs` signatures.
    """
    if len(signature) < 64:
        return empty(address)
    r: uint256 = extract32(signature, 0, output_type=uint256)
    s: uint256 = extract32(signature, 32, output_type=uint256)
    v: uint256 = 27 + (s >> 255)
    if len(signature) == 65:
        v = convert(slice(signature, 64, 1), uint256)
    else:
        s = s & ((1 << 255) - 1)
    if s > ecdsa._MALLEABILITY_THRESHOLD:
        return empty(address)
    return ecrecover(digest, v, r, s)


@internal
def _check_receiver(operator: address, _from: address, _to: address, token_id: uint256, data: Bytes[1_024]):
    """
    @dev A contract recipient must return the ERC-721 receiver selector.
         A revert in the hook is re-raised with its own reason.
    """
    if not _to.is_contract:
        return
    success: bool = False
    response: Bytes[1_024] = b""
    success, response = raw_call(
        _to,
        abi_encode(operator, _from, token_id, data, method_id=_ERC721_RECEIVED),
        max_outsize=1_024,
        revert_on_failure=False,
    )
    if success:
        if len(response) == 32 and extract32(response, 0) == convert(_ERC721_RECEIVED, bytes32):
            return
    elif len(response) != 0:
        raw_revert(response)
    raise "certificate: transfer to non-ERC721Receiver implementer"
