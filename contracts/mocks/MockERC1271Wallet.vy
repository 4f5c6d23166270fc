# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: a one-owner smart-contract wallet (ERC-1271)
@custom:contract-name MockERC1271Wallet
@license GNU Affero General Public License v3.0 only
@notice Test-only. Accepts a signature if its owner key signed the hash
        (ECDSA), the way a one-owner Safe does; can receive ERC-721 tokens
        and forward calls from its owner.
"""

from snekmate.utils import ecdsa

owner: public(address)


@deploy
def __init__(owner_: address):
    self.owner = owner_


@external
@view
def isValidSignature(_hash: bytes32, _signature: Bytes[65]) -> bytes4:
    if len(_signature) == 65 and ecdsa._recover_sig(_hash, _signature) == self.owner:
        return 0x1626BA7E
    return 0xFFFFFFFF


@external
def onERC721Received(_operator: address, _from: address, _tokenId: uint256, _data: Bytes[1_024]) -> bytes4:
    return 0x150B7A02


@external
def execute(target: address, data: Bytes[1_024]) -> Bytes[1_024]:
    assert msg.sender == self.owner, "wallet: caller is not the owner"
    return raw_call(target, data, max_outsize=1_024)
