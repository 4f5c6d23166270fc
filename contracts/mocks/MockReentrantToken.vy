# pragma version 0.4.3
# pragma nonreentrancy off
"""
@title Test double: a malicious stablecoin that re-enters on transfer
@custom:contract-name MockReentrantToken
@license GNU Affero General Public License v3.0 only
@notice Test-only. A plain ERC-20 (anyone may mint) that, after every
        `transfer` or `transferFrom` it carries out, calls `target` with
        the calldata set by `set_attack` (the way an ERC-777 hook or an
        upgraded token could). It records whether each call went through
        (`reentries_succeeded`, a bit per attempt) and how many it tried,
        and never fails the transfer itself because of it.
"""


balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)
decimals: public(constant(uint8)) = 6

# @notice Where the callback goes and what it sends (empty: no callback).
target: public(address)
payload: public(Bytes[2_048])
# @notice One bit per callback that went through, and how many were tried.
reentries_succeeded: public(uint256)
reentries_tried: public(uint256)


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@external
def set_attack(target: address, payload: Bytes[2_048]):
    self.target = target
    self.payload = payload


@external
def mint(to: address, amount: uint256):
    self.balanceOf[to] += amount
    self.totalSupply += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transfer(to: address, amount: uint256) -> bool:
    self._move(msg.sender, to, amount)
    self._callback()
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    self.allowance[owner][msg.sender] -= amount
    self._move(owner, to, amount)
    self._callback()
    return True


@internal
def _move(owner: address, to: address, amount: uint256):
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=owner, receiver=to, value=amount)


@internal
def _callback():
    if self.target == empty(address):
        return
    success: bool = raw_call(self.target, self.payload, revert_on_failure=False)
    if success:
        self.reentries_succeeded |= 1 << self.reentries_tried
    self.reentries_tried += 1
