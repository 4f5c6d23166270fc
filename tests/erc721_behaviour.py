"""A reusable ERC-721 conformance suite, after OpenZeppelin's ``shouldBehaveLikeERC721``.

The classes below hold the tests; their names do not start with ``Test``, so
pytest collects them only where a test module subclasses them::

    from erc721_behaviour import BehavesLikeERC721

    class TestMyTokenBehavesLikeERC721(BehavesLikeERC721):
        pass

The module that does so plugs its contract in by defining these fixtures:

``erc721``
    The token contract (an Ape contract instance).
``erc721_owner``
    An account that holds exactly the tokens ``erc721_owner_tokens``.
``erc721_owner_tokens``
    The ids of the tokens ``erc721_owner`` holds: at least two, and the first
    one free to move (the suite moves it).
``erc721_approved``, ``erc721_operator``, ``erc721_recipient``, ``erc721_stranger``
    Four distinct accounts, none of them ``erc721_owner``, holding no tokens,
    with no approval and no special role in the contract: the suite approves
    the first for one token, makes the second an operator, sends tokens to the
    third, and tries everything forbidden with the fourth.
``erc721_nonexistent_token``
    An id that no token has.
``erc721_errors``
    The contract's revert reasons by key (see ``ERROR_KEYS``): anything
    ``ape.reverts`` accepts (a string, a compiled pattern, a custom error).
``erc721_extra_interfaces``
    ERC-165 ids the contract supports besides ERC-165, ERC-721 and ERC-721
    metadata (may be empty).
``erc721_name``, ``erc721_symbol``, ``erc721_token_uri``
    The expected collection name and symbol, and a function from a token id to
    its expected ``tokenURI``.

The receiver test doubles come from ``contracts/mocks`` through Ape's ``project``
fixture. Events are compared by position, not by field name, so a contract
may name the fields of ``Transfer``, ``Approval`` and ``ApprovalForAll`` as it likes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import ape
import pytest
from eth_utils import keccak

ZERO_ADDRESS = "0x" + "00" * 20

ERC165_INTERFACE_ID = "0x01ffc9a7"
ERC721_INTERFACE_ID = "0x80ac58cd"
ERC721_METADATA_INTERFACE_ID = "0x5b5e139f"
INVALID_INTERFACE_ID = "0xffffffff"
ERC1155_INTERFACE_ID = "0xd9b67a26"

#: What ``safeTransferFrom(from, to, id, data)`` sends, so the receiver can be checked.
DATA = b"\x00\x01 a note for the cellar \xff"

#: The keys ``erc721_errors`` maps to the contract's revert reasons.
ERROR_KEYS = (
    "balance_of_zero_address",      # balanceOf(0)
    "nonexistent_token",            # ownerOf, getApproved, approve, tokenURI, transfer of a missing id
    "approval_to_current_owner",    # approve(owner, id)
    "approve_unauthorised",         # approve by neither the owner nor an operator
    "approve_to_caller",            # setApprovalForAll(msg.sender, ...)
    "transfer_unauthorised",        # transfer by neither owner, approved nor operator
    "transfer_from_incorrect_owner",
    "transfer_to_zero_address",
    "non_receiver",                 # safe transfer to a contract that does not accept it
)

#: The ERC-721 functions that change state; ``BehavesLikeNonPayableERC721`` checks them.
ERC721_STATE_CHANGING_FUNCTIONS = ("approve", "setApprovalForAll", "transferFrom", "safeTransferFrom")


class ReceiverBehaviour(IntEnum):
    """How ``MockERC721Receiver`` answers ``onERC721Received``."""

    ACCEPT = 0
    WRONG_SELECTOR = 1
    REVERT_WITH_MESSAGE = 2
    REVERT_WITHOUT_DATA = 3
    REVERT_WITH_CUSTOM_ERROR = 4


#: The reason ``MockERC721Receiver`` reverts with in ``REVERT_WITH_MESSAGE``.
RECEIVER_REJECTION = "receiver: rejected"
#: The selector of ``MockERC721Receiver``'s ``ReceiverRejected(uint256 tokenId)`` error.
RECEIVER_CUSTOM_ERROR_SELECTOR = keccak(text="ReceiverRejected(uint256)")[:4]


def event_values(log: Any) -> tuple[Any, ...]:
    """The arguments of a decoded event, in declaration order, whatever their names."""
    return tuple(log.event_arguments.values())


def emitted(receipt: Any, event: Any, contract: Any) -> list[tuple[Any, ...]]:
    """The values of every ``event`` that ``contract`` emitted in ``receipt``."""
    return [
        event_values(log)
        for log in receipt.decode_logs(event)
        if log.contract_address == contract.address
    ]


def _address(account: Any) -> str:
    return account if isinstance(account, str) else account.address


#: The ways to move a token, by the name tests are parametrised with.
TRANSFERS: dict[str, Callable[..., Any]] = {
    "transferFrom": lambda token, src, dst, token_id, sender: token.transferFrom(
        src, dst, token_id, sender=sender
    ),
    "safeTransferFrom": lambda token, src, dst, token_id, sender: token.safeTransferFrom(
        src, dst, token_id, sender=sender
    ),
    "safeTransferFrom(data)": lambda token, src, dst, token_id, sender: token.safeTransferFrom(
        src, dst, token_id, DATA, sender=sender
    ),
}
SAFE_TRANSFERS = ("safeTransferFrom", "safeTransferFrom(data)")
#: What the receiver hook is given as ``data`` by each safe transfer.
SAFE_TRANSFER_DATA = {"safeTransferFrom": b"", "safeTransferFrom(data)": DATA}


class _ERC721Fixtures:
    """Fixtures the behaviour classes share, derived from the plugged-in ones."""

    @pytest.fixture
    def erc721_token(self, erc721_owner_tokens):
        """The token the tests move: the first one ``erc721_owner`` holds."""
        return erc721_owner_tokens[0]

    @pytest.fixture
    def erc721_second_token(self, erc721_owner_tokens):
        """Another token of ``erc721_owner``, for approvals that must not leak."""
        return erc721_owner_tokens[1]

    @pytest.fixture
    def reason(self, erc721_errors):
        """``reason(key)``: the contract's revert reason for a failure of kind ``key``."""

        def _reason(key: str) -> Any:
            assert key in ERROR_KEYS, f"unknown error key {key!r}"
            assert key in erc721_errors, f"erc721_errors gives no reason for {key!r}"
            return erc721_errors[key]

        return _reason

    @pytest.fixture
    def deploy_receiver(self, project, erc721_stranger):
        """Builder: a ``MockERC721Receiver`` answering as ``behaviour`` says."""

        def _deploy(behaviour: ReceiverBehaviour) -> Any:
            return erc721_stranger.deploy(project.MockERC721Receiver, int(behaviour))

        return _deploy

    @pytest.fixture
    def deploy_non_receiver(self, project, erc721_stranger):
        """Builder: a ``MockNonReceiver``; ``accept_any_call`` gives it a silent fallback."""

        def _deploy(accept_any_call: bool = False) -> Any:
            return erc721_stranger.deploy(project.MockNonReceiver, accept_any_call)

        return _deploy


class BehavesLikeERC721(_ERC721Fixtures):
    """ERC-721 core: balances, owners, approvals, transfers and the receiver check."""

    @pytest.fixture(params=list(TRANSFERS))
    def transfer(self, request, erc721):
        """Each way to move a token: ``transfer(from, to, id, sender)``."""
        move = TRANSFERS[request.param]
        return lambda src, dst, token_id, sender: move(erc721, src, dst, token_id, sender)

    @pytest.fixture(params=SAFE_TRANSFERS)
    def safe_transfer_name(self, request):
        return request.param

    @pytest.fixture
    def safe_transfer(self, safe_transfer_name, erc721):
        """Each overload of ``safeTransferFrom``: ``safe_transfer(from, to, id, sender)``."""
        move = TRANSFERS[safe_transfer_name]
        return lambda src, dst, token_id, sender: move(erc721, src, dst, token_id, sender)

    # ------------------------------------------------------------ balanceOf

    def test_balance_of__owner__counts_its_tokens(self, erc721, erc721_owner, erc721_owner_tokens):
        assert erc721.balanceOf(erc721_owner) == len(erc721_owner_tokens)

    def test_balance_of__account_without_tokens__is_zero(self, erc721, erc721_stranger):
        assert erc721.balanceOf(erc721_stranger) == 0

    def test_balance_of__zero_address__reverts(self, erc721, reason):
        with ape.reverts(reason("balance_of_zero_address")):
            erc721.balanceOf(ZERO_ADDRESS)

    # -------------------------------------------------------------- ownerOf

    def test_owner_of__owned_tokens__is_owner(self, erc721, erc721_owner, erc721_owner_tokens):
        for token_id in erc721_owner_tokens:
            assert erc721.ownerOf(token_id) == erc721_owner

    def test_owner_of__nonexistent_token__reverts(self, erc721, erc721_nonexistent_token, reason):
        with ape.reverts(reason("nonexistent_token")):
            erc721.ownerOf(erc721_nonexistent_token)

    # ---------------------------------------------------- approve / getApproved

    def test_get_approved__token_never_approved__is_zero_address(self, erc721, erc721_token):
        assert erc721.getApproved(erc721_token) == ZERO_ADDRESS

    def test_get_approved__nonexistent_token__reverts(self, erc721, erc721_nonexistent_token, reason):
        with ape.reverts(reason("nonexistent_token")):
            erc721.getApproved(erc721_nonexistent_token)

    def test_approve__by_owner__sets_approved_and_emits_approval(
        self, erc721, erc721_owner, erc721_approved, erc721_token, erc721_second_token
    ):
        receipt = erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)

        assert erc721.getApproved(erc721_token) == erc721_approved
        assert erc721.getApproved(erc721_second_token) == ZERO_ADDRESS
        assert emitted(receipt, erc721.Approval, erc721) == [
            (erc721_owner.address, erc721_approved.address, erc721_token)
        ]

    def test_approve__by_operator__sets_approved_and_emits_approval_naming_owner(
        self, erc721, erc721_owner, erc721_operator, erc721_approved, erc721_token
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)

        receipt = erc721.approve(erc721_approved, erc721_token, sender=erc721_operator)

        assert erc721.getApproved(erc721_token) == erc721_approved
        assert emitted(receipt, erc721.Approval, erc721) == [
            (erc721_owner.address, erc721_approved.address, erc721_token)
        ]

    def test_approve__again__replaces_previous_approval(
        self, erc721, erc721_owner, erc721_approved, erc721_stranger, erc721_token
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)

        erc721.approve(erc721_stranger, erc721_token, sender=erc721_owner)

        assert erc721.getApproved(erc721_token) == erc721_stranger

    def test_approve__to_zero_address__clears_approval_and_emits_approval(
        self, erc721, erc721_owner, erc721_approved, erc721_token
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)

        receipt = erc721.approve(ZERO_ADDRESS, erc721_token, sender=erc721_owner)

        assert erc721.getApproved(erc721_token) == ZERO_ADDRESS
        assert emitted(receipt, erc721.Approval, erc721) == [
            (erc721_owner.address, ZERO_ADDRESS, erc721_token)
        ]

    def test_approve__to_current_owner__reverts(self, erc721, erc721_owner, erc721_token, reason):
        with ape.reverts(reason("approval_to_current_owner")):
            erc721.approve(erc721_owner, erc721_token, sender=erc721_owner)

    def test_approve__by_stranger__reverts(self, erc721, erc721_stranger, erc721_token, reason):
        with ape.reverts(reason("approve_unauthorised")):
            erc721.approve(erc721_stranger, erc721_token, sender=erc721_stranger)

        assert erc721.getApproved(erc721_token) == ZERO_ADDRESS

    def test_approve__by_approved_account__reverts(
        self, erc721, erc721_owner, erc721_approved, erc721_stranger, erc721_token, reason
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)

        with ape.reverts(reason("approve_unauthorised")):
            erc721.approve(erc721_stranger, erc721_token, sender=erc721_approved)

    def test_approve__by_operator_of_another_owner__reverts(
        self, erc721, erc721_stranger, erc721_operator, erc721_approved, erc721_token, reason
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_stranger)

        with ape.reverts(reason("approve_unauthorised")):
            erc721.approve(erc721_approved, erc721_token, sender=erc721_operator)

    def test_approve__nonexistent_token__reverts(
        self, erc721, erc721_owner, erc721_approved, erc721_nonexistent_token, reason
    ):
        with ape.reverts(reason("nonexistent_token")):
            erc721.approve(erc721_approved, erc721_nonexistent_token, sender=erc721_owner)

    # --------------------------------------------------- setApprovalForAll

    def test_set_approval_for_all__on__makes_operator_and_emits_event(
        self, erc721, erc721_owner, erc721_operator
    ):
        receipt = erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)

        assert erc721.isApprovedForAll(erc721_owner, erc721_operator) is True
        assert emitted(receipt, erc721.ApprovalForAll, erc721) == [
            (erc721_owner.address, erc721_operator.address, True)
        ]

    def test_set_approval_for_all__off__revokes_operator_and_emits_event(
        self, erc721, erc721_owner, erc721_operator
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)

        receipt = erc721.setApprovalForAll(erc721_operator, False, sender=erc721_owner)

        assert erc721.isApprovedForAll(erc721_owner, erc721_operator) is False
        assert emitted(receipt, erc721.ApprovalForAll, erc721) == [
            (erc721_owner.address, erc721_operator.address, False)
        ]

    def test_set_approval_for_all__on__applies_to_the_caller_only(
        self, erc721, erc721_owner, erc721_operator, erc721_stranger
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)

        assert erc721.isApprovedForAll(erc721_stranger, erc721_operator) is False
        assert erc721.isApprovedForAll(erc721_operator, erc721_owner) is False

    def test_set_approval_for_all__to_caller__reverts(self, erc721, erc721_owner, reason):
        with ape.reverts(reason("approve_to_caller")):
            erc721.setApprovalForAll(erc721_owner, True, sender=erc721_owner)

    # ------------------------------------------- transferFrom / safeTransferFrom

    def _assert_moved(self, erc721, receipt, src, dst, token_id, balances_before):
        assert erc721.ownerOf(token_id) == dst
        assert erc721.getApproved(token_id) == ZERO_ADDRESS
        assert erc721.balanceOf(src) == balances_before[0] - 1
        assert erc721.balanceOf(dst) == balances_before[1] + 1
        assert emitted(receipt, erc721.Transfer, erc721) == [(_address(src), _address(dst), token_id)]

    def test_transfer__by_owner__moves_token_and_clears_approval(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_approved, erc721_token
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        before = (erc721.balanceOf(erc721_owner), erc721.balanceOf(erc721_recipient))

        receipt = transfer(erc721_owner, erc721_recipient, erc721_token, erc721_owner)

        self._assert_moved(erc721, receipt, erc721_owner, erc721_recipient, erc721_token, before)

    def test_transfer__by_approved__moves_token_and_clears_approval(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_approved, erc721_token
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        before = (erc721.balanceOf(erc721_owner), erc721.balanceOf(erc721_recipient))

        receipt = transfer(erc721_owner, erc721_recipient, erc721_token, erc721_approved)

        self._assert_moved(erc721, receipt, erc721_owner, erc721_recipient, erc721_token, before)

    def test_transfer__by_operator__moves_token_and_keeps_operator(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_operator, erc721_token
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)
        before = (erc721.balanceOf(erc721_owner), erc721.balanceOf(erc721_recipient))

        receipt = transfer(erc721_owner, erc721_recipient, erc721_token, erc721_operator)

        self._assert_moved(erc721, receipt, erc721_owner, erc721_recipient, erc721_token, before)
        assert erc721.isApprovedForAll(erc721_owner, erc721_operator) is True

    def test_transfer__by_approved_to_itself__moves_token(
        self, transfer, erc721, erc721_owner, erc721_approved, erc721_token
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        before = (erc721.balanceOf(erc721_owner), erc721.balanceOf(erc721_approved))

        receipt = transfer(erc721_owner, erc721_approved, erc721_token, erc721_approved)

        self._assert_moved(erc721, receipt, erc721_owner, erc721_approved, erc721_token, before)

    def test_transfer__to_owner_itself__keeps_owner_and_balance_and_clears_approval(
        self, transfer, erc721, erc721_owner, erc721_approved, erc721_token
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        balance = erc721.balanceOf(erc721_owner)

        receipt = transfer(erc721_owner, erc721_owner, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner
        assert erc721.balanceOf(erc721_owner) == balance
        assert erc721.getApproved(erc721_token) == ZERO_ADDRESS
        assert emitted(receipt, erc721.Transfer, erc721) == [
            (erc721_owner.address, erc721_owner.address, erc721_token)
        ]

    def test_transfer__then_new_owner__can_move_it_on(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_stranger, erc721_token
    ):
        transfer(erc721_owner, erc721_recipient, erc721_token, erc721_owner)

        transfer(erc721_recipient, erc721_stranger, erc721_token, erc721_recipient)

        assert erc721.ownerOf(erc721_token) == erc721_stranger

    def test_transfer__by_previous_owner__reverts(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_token, reason
    ):
        transfer(erc721_owner, erc721_recipient, erc721_token, erc721_owner)

        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_recipient, erc721_owner, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_recipient

    def test_transfer__by_stranger__reverts(
        self, transfer, erc721, erc721_owner, erc721_stranger, erc721_token, reason
    ):
        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_owner, erc721_stranger, erc721_token, erc721_stranger)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer__by_approved_of_another_token__reverts(
        self, transfer, erc721, erc721_owner, erc721_approved, erc721_token, erc721_second_token, reason
    ):
        erc721.approve(erc721_approved, erc721_second_token, sender=erc721_owner)

        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_owner, erc721_approved, erc721_token, erc721_approved)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer__by_approved_after_approval_cleared__reverts(
        self, transfer, erc721, erc721_owner, erc721_approved, erc721_token, reason
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        erc721.approve(ZERO_ADDRESS, erc721_token, sender=erc721_owner)

        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_owner, erc721_approved, erc721_token, erc721_approved)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer__by_previously_approved_after_a_transfer__reverts(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_approved, erc721_token, reason
    ):
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        transfer(erc721_owner, erc721_recipient, erc721_token, erc721_owner)

        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_recipient, erc721_approved, erc721_token, erc721_approved)

        assert erc721.ownerOf(erc721_token) == erc721_recipient

    def test_transfer__by_revoked_operator__reverts(
        self, transfer, erc721, erc721_owner, erc721_operator, erc721_token, reason
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)
        erc721.setApprovalForAll(erc721_operator, False, sender=erc721_owner)

        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_owner, erc721_operator, erc721_token, erc721_operator)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer__by_operator_of_previous_owner__reverts(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_operator, erc721_token, reason
    ):
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)
        transfer(erc721_owner, erc721_recipient, erc721_token, erc721_owner)

        with ape.reverts(reason("transfer_unauthorised")):
            transfer(erc721_recipient, erc721_operator, erc721_token, erc721_operator)

        assert erc721.ownerOf(erc721_token) == erc721_recipient

    def test_transfer__from_incorrect_owner__reverts(
        self, transfer, erc721, erc721_owner, erc721_recipient, erc721_stranger, erc721_token, reason
    ):
        with ape.reverts(reason("transfer_from_incorrect_owner")):
            transfer(erc721_stranger, erc721_recipient, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer__to_zero_address__reverts(self, transfer, erc721, erc721_owner, erc721_token, reason):
        with ape.reverts(reason("transfer_to_zero_address")):
            transfer(erc721_owner, ZERO_ADDRESS, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer__nonexistent_token__reverts(
        self, transfer, erc721_owner, erc721_recipient, erc721_nonexistent_token, reason
    ):
        with ape.reverts(reason("nonexistent_token")):
            transfer(erc721_owner, erc721_recipient, erc721_nonexistent_token, erc721_owner)

    # ------------------------------------------------------ receiver matrix

    def test_safe_transfer__to_account_without_code__moves_token(
        self, safe_transfer, erc721, erc721_owner, erc721_recipient, erc721_token
    ):
        safe_transfer(erc721_owner, erc721_recipient, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_recipient

    def test_safe_transfer__to_accepting_receiver__moves_token_and_tells_the_receiver(
        self, safe_transfer, safe_transfer_name, deploy_receiver, erc721, erc721_owner, erc721_approved,
        erc721_token,
    ):
        receiver = deploy_receiver(ReceiverBehaviour.ACCEPT)
        erc721.approve(erc721_approved, erc721_token, sender=erc721_owner)
        data = SAFE_TRANSFER_DATA[safe_transfer_name]

        receipt = safe_transfer(erc721_owner, receiver, erc721_token, erc721_approved)

        assert erc721.ownerOf(erc721_token) == receiver
        assert receiver.calls() == 1
        assert receiver.last_token() == erc721
        assert receiver.last_operator() == erc721_approved
        assert receiver.last_from() == erc721_owner
        assert receiver.last_token_id() == erc721_token
        assert receiver.last_data() == data
        assert emitted(receipt, receiver.Received, receiver) == [
            (erc721_approved.address, erc721_owner.address, erc721_token, data)
        ]
        assert emitted(receipt, erc721.Transfer, erc721) == [
            (erc721_owner.address, receiver.address, erc721_token)
        ]

    def test_safe_transfer__by_operator_to_accepting_receiver__names_the_operator(
        self, safe_transfer, deploy_receiver, erc721, erc721_owner, erc721_operator, erc721_token
    ):
        receiver = deploy_receiver(ReceiverBehaviour.ACCEPT)
        erc721.setApprovalForAll(erc721_operator, True, sender=erc721_owner)

        safe_transfer(erc721_owner, receiver, erc721_token, erc721_operator)

        assert receiver.last_operator() == erc721_operator
        assert receiver.last_from() == erc721_owner

    def test_safe_transfer__to_receiver_answering_wrong_selector__reverts(
        self, safe_transfer, deploy_receiver, erc721, erc721_owner, erc721_token, reason
    ):
        receiver = deploy_receiver(ReceiverBehaviour.WRONG_SELECTOR)

        with ape.reverts(reason("non_receiver")):
            safe_transfer(erc721_owner, receiver, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_safe_transfer__to_receiver_reverting_with_reason__reverts_with_that_reason(
        self, safe_transfer, deploy_receiver, erc721, erc721_owner, erc721_token
    ):
        receiver = deploy_receiver(ReceiverBehaviour.REVERT_WITH_MESSAGE)

        with ape.reverts(RECEIVER_REJECTION):
            safe_transfer(erc721_owner, receiver, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_safe_transfer__to_receiver_reverting_with_custom_error__reverts_with_that_error(
        self, safe_transfer, deploy_receiver, erc721, erc721_owner, erc721_token
    ):
        receiver = deploy_receiver(ReceiverBehaviour.REVERT_WITH_CUSTOM_ERROR)
        error = RECEIVER_CUSTOM_ERROR_SELECTOR + erc721_token.to_bytes(32, "big")

        with ape.reverts() as revert:
            safe_transfer(erc721_owner, receiver, erc721_token, erc721_owner)

        assert revert.value.revert_message == "0x" + error.hex()
        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_safe_transfer__to_receiver_reverting_without_data__reverts(
        self, safe_transfer, deploy_receiver, erc721, erc721_owner, erc721_token, reason
    ):
        receiver = deploy_receiver(ReceiverBehaviour.REVERT_WITHOUT_DATA)

        with ape.reverts(reason("non_receiver")):
            safe_transfer(erc721_owner, receiver, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_safe_transfer__to_contract_without_hook__reverts(
        self, safe_transfer, deploy_non_receiver, erc721, erc721_owner, erc721_token, reason
    ):
        contract = deploy_non_receiver()

        with ape.reverts(reason("non_receiver")):
            safe_transfer(erc721_owner, contract, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_safe_transfer__to_contract_whose_fallback_returns_nothing__reverts(
        self, safe_transfer, deploy_non_receiver, erc721, erc721_owner, erc721_token, reason
    ):
        contract = deploy_non_receiver(accept_any_call=True)

        with ape.reverts(reason("non_receiver")):
            safe_transfer(erc721_owner, contract, erc721_token, erc721_owner)

        assert erc721.ownerOf(erc721_token) == erc721_owner

    def test_transfer_from__to_contract_without_hook__moves_token(
        self, deploy_non_receiver, erc721, erc721_owner, erc721_token
    ):
        contract = deploy_non_receiver()

        erc721.transferFrom(erc721_owner, contract, erc721_token, sender=erc721_owner)

        assert erc721.ownerOf(erc721_token) == contract

    def test_transfer_from__to_receiver__does_not_call_the_hook(
        self, deploy_receiver, erc721, erc721_owner, erc721_token
    ):
        receiver = deploy_receiver(ReceiverBehaviour.ACCEPT)

        receipt = erc721.transferFrom(erc721_owner, receiver, erc721_token, sender=erc721_owner)

        assert erc721.ownerOf(erc721_token) == receiver
        assert receiver.calls() == 0
        assert emitted(receipt, receiver.Received, receiver) == []


class SupportsERC721Interfaces:
    """ERC-165: the contract announces ERC-165, ERC-721 and ERC-721 metadata."""

    @pytest.mark.parametrize(
        "interface_id", [ERC165_INTERFACE_ID, ERC721_INTERFACE_ID, ERC721_METADATA_INTERFACE_ID],
        ids=["ERC-165", "ERC-721", "ERC-721-metadata"],
    )
    def test_supports_interface__standard_id__is_true(self, erc721, interface_id):
        assert erc721.supportsInterface(interface_id) is True

    def test_supports_interface__extra_ids__are_true(self, erc721, erc721_extra_interfaces):
        if not erc721_extra_interfaces:
            pytest.skip("the contract declares no extra interfaces")
        for interface_id in erc721_extra_interfaces:
            assert erc721.supportsInterface(interface_id) is True, interface_id

    def test_supports_interface__invalid_id__is_false(self, erc721):
        assert erc721.supportsInterface(INVALID_INTERFACE_ID) is False

    def test_supports_interface__unsupported_id__is_false(self, erc721, erc721_extra_interfaces):
        assert ERC1155_INTERFACE_ID not in erc721_extra_interfaces
        assert erc721.supportsInterface(ERC1155_INTERFACE_ID) is False


class BehavesLikeERC721Metadata(_ERC721Fixtures):
    """ERC-721 metadata: name, symbol and token URIs."""

    def test_name__is_collection_name(self, erc721, erc721_name):
        assert erc721.name() == erc721_name

    def test_symbol__is_collection_symbol(self, erc721, erc721_symbol):
        assert erc721.symbol() == erc721_symbol

    def test_token_uri__existing_token__is_its_uri(self, erc721, erc721_owner_tokens, erc721_token_uri):
        for token_id in erc721_owner_tokens:
            assert erc721.tokenURI(token_id) == erc721_token_uri(token_id)

    def test_token_uri__nonexistent_token__reverts(self, erc721, erc721_nonexistent_token, reason):
        with ape.reverts(reason("nonexistent_token")):
            erc721.tokenURI(erc721_nonexistent_token)


class BehavesLikeNonPayableERC721(_ERC721Fixtures):
    """For a contract whose ERC-721 functions refuse ether (ERC-721 allows either)."""

    @pytest.fixture(params=list(TRANSFERS))
    def transfer_calldata(self, request, erc721):
        """Calldata of each way to move a token: ``transfer_calldata(from, to, id)``."""
        name = request.param
        if name == "transferFrom":
            return lambda src, dst, token_id: erc721.transferFrom.encode_input(src, dst, token_id)
        if name == "safeTransferFrom":
            return lambda src, dst, token_id: erc721.safeTransferFrom.encode_input(src, dst, token_id)
        return lambda src, dst, token_id: erc721.safeTransferFrom.encode_input(src, dst, token_id, DATA)

    def test_abi__state_changing_erc721_functions__are_non_payable(self, erc721):
        mutability = {
            (abi.name, len(abi.inputs)): abi.stateMutability
            for abi in erc721.contract_type.mutable_methods
            if abi.name in ERC721_STATE_CHANGING_FUNCTIONS
        }

        assert mutability == {
            ("approve", 2): "nonpayable",
            ("setApprovalForAll", 2): "nonpayable",
            ("transferFrom", 3): "nonpayable",
            ("safeTransferFrom", 3): "nonpayable",
            ("safeTransferFrom", 4): "nonpayable",
        }

    def test_transfer__without_ether__moves_token(
        self, transfer_calldata, erc721, erc721_owner, erc721_recipient, erc721_token
    ):
        erc721_owner.transfer(erc721, 0, data=transfer_calldata(erc721_owner, erc721_recipient, erc721_token))

        assert erc721.ownerOf(erc721_token) == erc721_recipient

    def test_transfer__with_ether__reverts(
        self, transfer_calldata, erc721, erc721_owner, erc721_recipient, erc721_token
    ):
        balance = erc721.balance

        with ape.reverts():
            erc721_owner.transfer(
                erc721, 1, data=transfer_calldata(erc721_owner, erc721_recipient, erc721_token)
            )

        assert erc721.ownerOf(erc721_token) == erc721_owner
        assert erc721.balance == balance
