# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: a contract that is not an ERC-721 receiver
@custom:contract-name MockNonReceiver
@license GNU Affero General Public License v3.0 only
@notice Test-only. Has code but no `onERC721Received`. With `accept_any_call`
        off, a call to the hook reverts without data, like any contract
        without a fallback; with it on, a fallback accepts the call and
        returns nothing, like a contract with a permissive fallback. Either
        way a safe transfer to it must revert.
"""


# @notice Whether the fallback accepts calls to unknown functions.
accept_any_call: public(bool)
# @notice Something to set, so the contract does more than exist.
value: public(uint256)


@deploy
def __init__(accept_any_call_: bool):
    self.accept_any_call = accept_any_call_


@external
def set_value(value_: uint256):
    self.value = value_


@external
def __default__():
    """
    @dev Reverts without data unless `accept_any_call`; then returns nothing.
    """
    if not self.accept_any_call:
        raw_revert(b"")
