# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: an ERC-721 receiver with a chosen answer
@custom:contract-name MockERC721Receiver
@license GNU Affero General Public License v3.0 only
@notice Test-only. Answers `onERC721Received` the way its constructor
        says (`behaviour`): accept, answer a wrong selector, revert with a
        reason, revert without data, or revert with a custom error. Records
        the last call it accepted so a test can check what the token told it.
@dev A receiver that returns no data at all is `MockNonReceiver` with its
     fallback enabled: Vyper cannot return raw bytes from a typed function.
"""


# @dev The behaviours, in the order the constructor numbers them.
ACCEPT: public(constant(uint8)) = 0
WRONG_SELECTOR: public(constant(uint8)) = 1
REVERT_WITH_MESSAGE: public(constant(uint8)) = 2
REVERT_WITHOUT_DATA: public(constant(uint8)) = 3
REVERT_WITH_CUSTOM_ERROR: public(constant(uint8)) = 4

_ERC721_RECEIVED: constant(bytes4) = 0x150B7A02
# @dev A plausible wrong answer: the ERC-1155 single-receive selector.
_WRONG_SELECTOR: constant(bytes4) = 0xF23A6E61
# @dev `error ReceiverRejected(uint256 tokenId)`, as Solidity encodes it.
_CUSTOM_ERROR: constant(bytes4) = method_id("ReceiverRejected(uint256)", output_type=bytes4)


event Received:
    operator: indexed(address)
    sender: indexed(address)
    tokenId: indexed(uint256)
    data: Bytes[1_024]


# @notice How this receiver answers (one of the constants above).
behaviour: public(uint8)
# @notice The arguments of the last call accepted.
last_operator: public(address)
last_from: public(address)
last_token_id: public(uint256)
last_data: public(Bytes[1_024])
last_token: public(address)
# @notice How many calls were accepted.
calls: public(uint256)


@deploy
def __init__(behaviour_: uint8):
    assert behaviour_ <= REVERT_WITH_CUSTOM_ERROR, "receiver: unknown behaviour"
    self.behaviour = behaviour_


@external
def onERC721Received(_operator: address, _from: address, _tokenId: uint256, _data: Bytes[1_024]) -> bytes4:
    """
    @notice The ERC-721 receiver hook, answering as configured.
    """
    mode: uint8 = self.behaviour
    if mode == REVERT_WITH_MESSAGE:
        raise "receiver: rejected"
    if mode == REVERT_WITHOUT_DATA:
        raw_revert(b"")
    if mode == REVERT_WITH_CUSTOM_ERROR:
        raw_revert(abi_encode(_tokenId, method_id=_CUSTOM_ERROR))
    self.last_operator = _operator
    self.last_from = _from
    self.last_token_id = _tokenId
    self.last_data = _data
    self.last_token = msg.sender
    self.calls += 1
    log Received(operator=_operator, sender=_from, tokenId=_tokenId, data=_data)
    if mode == WRONG_SELECTOR:
        return _WRONG_SELECTOR
    return _ERC721_RECEIVED
