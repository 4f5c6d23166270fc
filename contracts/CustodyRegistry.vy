# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
"""
@title Amphora Custody Registry
@custom:contract-name CustodyRegistry
@license GNU Affero General Public License v3.0 only
@notice What the custodians (cellars, warehouses) say about the bottles
        they keep: per lot, the latest storage attestation (the hash and
        URI of a document: a cellar report, a temperature log, an audit);
        per custodian, the latest proof-of-reserve root, a Merkle root of
        the token ids of every bottle it holds, so that anyone can check
        that a bottle was in custody at the last attestation
        (`verify_reserve`). `custody` returns both for one bottle.
@dev Roles and lots are the certificate's: a custodian is whoever
     `WineCertificate.is_custodian` says, and a lot's custodian is
     `WineCertificate.custodian_of` (which the certificate's admin changes
     with `move_custody`). It lives apart from the certificate because the
     certificate is near the 24,576-byte code limit.
     Storage, chosen for gas: an attestation is two words (document hash;
     attester | attested_at << 160), a reserve root two (root; posted_at |
     bottle_count << 64). The URIs are only emitted in the events: the
     stored hash authenticates a document wherever it is fetched from.
@custom:security Emergency: the registry has no pause of its own; it holds
                 no funds and moves no token. The certificate's admin stops
                 a custodian at once with `revoke_custodian` (the registry
                 then refuses its attestations and roots) and hands its
                 lots to another custodian with `move_custody`.
                 Every statement here is the custodian's claim: it proves
                 what the custodian said and when, not what it holds.
"""


from snekmate.utils import merkle_proof_verification


interface IWineCertificate:
    def is_custodian(account: address) -> bool: view
    def custodian_of(token_id: uint256) -> address: view


# @dev A token id is `lot_id << SERIAL_BITS | serial` (as in the certificate).
SERIAL_BITS: constant(uint256) = 32
# @dev Maximum depth of a reserve Merkle proof (trees of up to 2**32 leaves).
MAX_PROOF_DEPTH: constant(uint256) = 32
_ADDRESS_MASK: constant(uint256) = (1 << 160) - 1
_U64: constant(uint256) = (1 << 64) - 1


struct Custody:
    # The bottle's custodian now (zero for a token never issued).
    custodian: address
    # The lot's latest storage attestation: its document hash, time, and
    # the custodian that posted it (an earlier custodian after a move).
    storage_document_hash: bytes32
    storage_attested_at: uint256
    storage_attested_by: address
    # The current custodian's latest proof-of-reserve root, its time and
    # the number of bottles it lists.
    reserve_root: bytes32
    reserve_posted_at: uint256
    reserve_bottle_count: uint256


event StorageAttested:
    lot_id: indexed(uint256)
    custodian: indexed(address)
    document_hash: bytes32
    document_uri: String[256]


event ReserveRootPosted:
    custodian: indexed(address)
    root: bytes32
    bottle_count: uint256
    tree_uri: String[256]


# @notice The certificate whose custodians and lots this registry follows.
CERTIFICATE: public(immutable(IWineCertificate))

# @dev lot_id => document hash of the latest storage attestation
_storage_document: HashMap[uint256, bytes32]
# @dev lot_id => attesting custodian | attested_at << 160
_storage_attested: HashMap[uint256, uint256]
# @dev custodian => latest reserve root
_reserve_root: HashMap[address, bytes32]
# @dev custodian => posted_at | bottle_count << 64
_reserve_meta: HashMap[address, uint256]


@deploy
def __init__(certificate_: address):
    """
    @param certificate_ The WineCertificate whose custodians may post here.
    """
    assert certificate_.is_contract, "custody: certificate is not a contract"
    CERTIFICATE = IWineCertificate(certificate_)


@external
def attest_storage(lot_id: uint256, document_hash: bytes32, document_uri: String[256]):
    """
    @notice The lot's custodian: attest how the lot is stored, by the
            keccak256 of the document and where it can be fetched. It
            replaces the lot's previous attestation.
    @param lot_id An issued lot (at most 64 bits, as in the certificate);
           any other id reverts, so no event names a lot that does not
           exist.
    @param document_hash keccak256 of the document; not zero.
    @param document_uri Where the document is, emitted in `StorageAttested`.
    @custom:security Privilege: only the lot's current custodian (in the
                     certificate) while it holds the custodian role; an
                     earlier custodian can no longer write for the lot.
                     Replay: nothing to replay, the caller is the author.
                     Re-entrancy: the only calls are views of the
                     certificate. Records only; moves no token.
    """
    assert document_hash != empty(bytes32), "custody: document hash is empty"
    # A lot id above 64 bits would lose its high bits in the shift and name
    # a real lot's first bottle (a phantom lot in the event): refused.
    custodian: address = empty(address)
    if lot_id <= _U64:
        custodian = staticcall CERTIFICATE.custodian_of((lot_id << SERIAL_BITS) | 1)
    assert custodian != empty(address), "custody: lot does not exist"
    assert msg.sender == custodian and staticcall CERTIFICATE.is_custodian(msg.sender), (
        "custody: caller is not the lot's custodian"
    )
    self._storage_document[lot_id] = document_hash
    self._storage_attested[lot_id] = convert(msg.sender, uint256) | (block.timestamp << 160)
    log StorageAttested(lot_id=lot_id, custodian=msg.sender, document_hash=document_hash, document_uri=document_uri)


@external
def post_reserve_root(root: bytes32, bottle_count: uint256, tree_uri: String[256]):
    """
    @notice Custodian: post a proof-of-reserve root, the Merkle root of the
            token ids of the `bottle_count` bottles it holds now (the
            tree's ids at `tree_uri`). It replaces the custodian's previous
            root. Anyone can then check a bottle with `verify_reserve`.
    @dev Leaf = keccak256(keccak256(abi.encode(uint256 token_id))); inner
         nodes hash the sorted pair of children, as in the certificate's
         tag trees (`amphora.merkle.ReserveTree` builds it).
    @custom:security Privilege: registered custodians only, each writing
                     only its own root. The root proves what the custodian
                     claimed, not what it holds; a custodian that lists a
                     bottle it shipped is caught by comparing the root's
                     time with the certificate's `redeemed_at`.
    """
    assert staticcall CERTIFICATE.is_custodian(msg.sender), "custody: caller is not a custodian"
    assert bottle_count <= _U64, "custody: bottle count out of range"
    self._reserve_root[msg.sender] = root
    self._reserve_meta[msg.sender] = block.timestamp | (bottle_count << 64)
    log ReserveRootPosted(custodian=msg.sender, root=root, bottle_count=bottle_count, tree_uri=tree_uri)


@external
@view
def verify_reserve(token_id: uint256, proof: DynArray[bytes32, MAX_PROOF_DEPTH]) -> bool:
    """
    @notice Whether this bottle is listed in its current custodian's latest
            proof-of-reserve root (`custody` gives the root's time). False
            for a token never issued or a custodian that posted no root.
    """
    custodian: address = staticcall CERTIFICATE.custodian_of(token_id)
    if custodian == empty(address):
        return False
    root: bytes32 = self._reserve_root[custodian]
    if root == empty(bytes32):
        return False
    leaf: bytes32 = keccak256(abi_encode(keccak256(abi_encode(token_id))))
    return merkle_proof_verification._verify(proof, root, leaf)


@external
@view
def custody(token_id: uint256) -> Custody:
    """
    @notice Where a bottle is kept and what its custodian last attested:
            the lot's latest storage attestation and the custodian's
            latest reserve root. Never reverts: a token never issued
            answers an empty record.
    """
    result: Custody = empty(Custody)
    custodian: address = staticcall CERTIFICATE.custodian_of(token_id)
    if custodian == empty(address):
        return result
    lot_id: uint256 = token_id >> SERIAL_BITS
    result.custodian = custodian
    result.storage_document_hash = self._storage_document[lot_id]
    attested: uint256 = self._storage_attested[lot_id]
    result.storage_attested_by = convert(attested & _ADDRESS_MASK, address)
    result.storage_attested_at = attested >> 160
    result.reserve_root = self._reserve_root[custodian]
    meta: uint256 = self._reserve_meta[custodian]
    result.reserve_posted_at = meta & _U64
    result.reserve_bottle_count = meta >> 64
    return result
