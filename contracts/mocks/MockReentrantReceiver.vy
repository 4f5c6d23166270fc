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


@deploy
def __init__(token_: address, behaviour_: uint8, beneficiary_: address):
    assert behaviour_ <= TRY_REENTER, "receiver: unknown behaviour"
    self.token = IERC721(token_)
    self.behaviour = behaviour_
    self.beneficiary = beneficiary_


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
    else:
        success: bool = raw_call(
            self.token.address,
            abi_encode(self, self.beneficiary, _tokenId, method_id=method_id("transferFrom(address,address,uint256)")),
            revert_on_failure=False,
        )
        self.reentry_succeeded = success
    return _ERC721_RECEIVED
