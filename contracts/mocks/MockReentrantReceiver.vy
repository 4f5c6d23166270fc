# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: an ERC-721 receiver that calls back into the token
@custom:contract-name MockReentrantReceiver
@license GNU Affero General Public License v3.0 only
@notice Test-only. From inside `onERC721Received` it calls the token again,
        as its constructor says (`behaviour`):
        - `REENTER_TRANSFER_FROM`: moves the token it is receiving on to
          `beneficiary` with `transferFrom`; a revert is passed on.
        - `REENTER_SAFE_TRANSFER_FROM`: the same with `safeTransferFrom`.
        - `READ_OWNER`: reads `ownerOf` and `balanceOf` (views) and
          records what it saw.
        - `TRY_REENTER`: tries `transferFrom` as above, records whether it
          went through, and accepts the token either way.
        - `TRY_EVERY_CALL`: tries every state-changing call a holder could
          make with the token it is receiving (gift create, revoke and
          claim, redemption request, flag, transfers, approvals), records
          in `reentries_succeeded` a bit per call that went through (bit
          i for call i, in that order; `reentries_tried` counts them) and
          accepts the token either way. The gift claim uses the token id
          and claim signature set with `set_claim`.
        It answers the ERC-721 receiver selector unless a call reverted.
"""


interface IERC721:
    def transferFrom(_from: address, _to: address, _tokenId: uint256): nonpayable
    def safeTransferFrom(_from: address, _to: address, _tokenId: uint256, _data: Bytes[1_024]): nonpayable
    def ownerOf(_tokenId: uint256) -> address: view
    def balanceOf(_owner: address) -> uint256: view


REENTER_TRANSFER_FROM: public(constant(uint8)) = 0
REENTER_SAFE_TRANSFER_FROM: public(constant(uint8)) = 1
READ_OWNER: public(constant(uint8)) = 2
TRY_REENTER: public(constant(uint8)) = 3
TRY_EVERY_CALL: public(constant(uint8)) = 4

_ERC721_RECEIVED: constant(bytes4) = 0x150B7A02


# @notice The token this receiver calls back into.
token: public(IERC721)
# @notice What it does from inside the hook (one of the constants above).
behaviour: public(uint8)
# @notice Where a re-entrant transfer sends the token.
beneficiary: public(address)
# @notice `ownerOf(tokenId)` and `balanceOf(self)` as seen inside the hook.
owner_seen: public(address)
balance_seen: public(uint256)
# @notice Whether the hook ran, and (`TRY_REENTER`) whether re-entry succeeded.
hook_ran: public(bool)
reentry_succeeded: public(bool)
# @notice `TRY_EVERY_CALL`: one bit per call that went through, and how many were tried.
reentries_succeeded: public(uint256)
reentries_tried: public(uint256)
# @notice `TRY_EVERY_CALL`: a pending gift to claim for `beneficiary`, with its claim signature.
claim_token: public(uint256)
claim_signature: public(Bytes[65])


@deploy
def __init__(token_: address, behaviour_: uint8, beneficiary_: address):
    assert behaviour_ <= TRY_EVERY_CALL, "receiver: unknown behaviour"
    self.token = IERC721(token_)
    self.behaviour = behaviour_
    self.beneficiary = beneficiary_


@external
def set_claim(token_id: uint256, signature: Bytes[65]):
    """
    @notice The gift `TRY_EVERY_CALL` tries to claim for `beneficiary`.
    """
    self.claim_token = token_id
    self.claim_signature = signature


@internal
def _try(data: Bytes[292]):
    success: bool = raw_call(self.token.address, data, revert_on_failure=False)
    if success:
        self.reentries_succeeded |= 1 << self.reentries_tried
    self.reentries_tried += 1


@external
def onERC721Received(_operator: address, _from: address, _tokenId: uint256, _data: Bytes[1_024]) -> bytes4:
    """
    @notice The ERC-721 receiver hook, calling back into the token.
    """
    self.hook_ran = True
    mode: uint8 = self.behaviour
    if mode == REENTER_TRANSFER_FROM:
        extcall self.token.transferFrom(self, self.beneficiary, _tokenId)
    elif mode == REENTER_SAFE_TRANSFER_FROM:
        extcall self.token.safeTransferFrom(self, self.beneficiary, _tokenId, b"")
    elif mode == READ_OWNER:
        self.owner_seen = staticcall self.token.ownerOf(_tokenId)
        self.balance_seen = staticcall self.token.balanceOf(self)
    elif mode == TRY_EVERY_CALL:
        to: address = self.beneficiary
        note: bytes32 = keccak256("reentrant receiver")
        self._try(abi_encode(_tokenId, to, block.timestamp + 3_600,
                             method_id=method_id("create_gift(uint256,address,uint256)")))
        self._try(abi_encode(_tokenId, method_id=method_id("revoke_gift(uint256)")))
        self._try(abi_encode(self.claim_token, to, self.claim_signature,
                             method_id=method_id("claim_gift(uint256,address,bytes)")))
        self._try(abi_encode(_tokenId, note, method_id=method_id("request_redemption(uint256,bytes32)")))
        self._try(abi_encode(_tokenId, note, method_id=method_id("flag(uint256,bytes32)")))
        self._try(abi_encode(self, to, _tokenId, method_id=method_id("transferFrom(address,address,uint256)")))
        self._try(abi_encode(self, to, _tokenId, b"",
                             method_id=method_id("safeTransferFrom(address,address,uint256,bytes)")))
        self._try(abi_encode(to, _tokenId, method_id=method_id("approve(address,uint256)")))
        self._try(abi_encode(to, True, method_id=method_id("setApprovalForAll(address,bool)")))
    else:
        success: bool = raw_call(
            self.token.address,
            abi_encode(self, self.beneficiary, _tokenId, method_id=method_id("transferFrom(address,address,uint256)")),
            revert_on_failure=False,
        )
        self.reentry_succeeded = success
    return _ERC721_RECEIVED
