# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: an ERC-1271 wallet that lies to simulations
@custom:contract-name MockTwoFacedWallet
@license GNU Affero General Public License v3.0 only
@notice Test-only. A one-owner wallet (ERC-1271) that an attacker controls:
        with `lie` set, it accepts its owner's signature only where
        `tx.gasprice` is 0 (an `eth_estimateGas` or `eth_call` without fee
        fields) and refuses it on chain; with `valid` cleared it refuses
        every signature, so its owner can make a relayed call that passed
        simulation revert when mined, then accept it again.
"""

from snekmate.utils import ecdsa

owner: public(address)
lie: public(bool)
valid: public(bool)


@deploy
def __init__(owner_: address, lie_: bool):
    self.owner = owner_
    self.lie = lie_
    self.valid = True


@external
def set_mode(valid_: bool, lie_: bool):
    assert msg.sender == self.owner, "wallet: caller is not the owner"
    self.valid = valid_
    self.lie = lie_


@external
@view
def isValidSignature(_hash: bytes32, _signature: Bytes[65]) -> bytes4:
    if not self.valid:
        return 0xFFFFFFFF
    if self.lie and tx.gasprice != 0:
        return 0xFFFFFFFF
    if len(_signature) == 65 and ecdsa._recover_sig(_hash, _signature) == self.owner:
        return 0x1626BA7E
    return 0xFFFFFFFF
