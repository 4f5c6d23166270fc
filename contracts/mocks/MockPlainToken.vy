# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: a plain or fee-taking ERC-20 with open minting
@custom:contract-name MockPlainToken
@license GNU Affero General Public License v3.0 only
@notice Test-only. `fee_bps` > 0 makes every transfer deliver less than
        asked (a fee-on-transfer token), to show PointsToken refuses it.
"""

from snekmate.auth import ownable
initializes: ownable

from snekmate.tokens import erc20
initializes: erc20[ownable := ownable]

exports: (
    erc20.name, erc20.symbol, erc20.decimals, erc20.totalSupply, erc20.balanceOf, erc20.allowance,
    erc20.approve,
)

fee_bps: public(uint256)


@deploy
def __init__(decimals_: uint8, fee_bps_: uint256):
    ownable.__init__()
    erc20.__init__("Mock Token", "MOCK", decimals_, "Mock Token", "1")
    self.fee_bps = fee_bps_


@external
def mint(to: address, amount: uint256):
    erc20._mint(to, amount)


@external
def transfer(to: address, amount: uint256) -> bool:
    erc20._transfer(msg.sender, to, amount - amount * self.fee_bps // 10_000)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount - amount * self.fee_bps // 10_000)
    return True
