"""Plumbing for the hypothesis state machines: a bare web3 client on Ape's
anvil (Ape's per-call middleware costs milliseconds a call, too slow for
thousands of steps), batched eth_call reads, transactions from anvil's
unlocked accounts, and one evm_snapshot per example."""

from __future__ import annotations

import re
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

GAS = 2_000_000


class FastChain:
    def __init__(self, uri: str):
        self.w3 = Web3(HTTPProvider(uri))
        self.w3.middleware_onion.clear()
        self.steps = 0

    def contract(self, address: str, ape_contract: Any) -> Any:
        abi = [a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in ape_contract.contract_type.abi]
        return self.w3.eth.contract(address=address, abi=abi)

    def snapshot(self) -> str:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]

    def revert(self, snapshot: str) -> None:
        self.w3.provider.make_request("evm_revert", [snapshot])

    def reads(self, calls: list[tuple[Any, str, tuple[Any, ...]]]) -> list[int]:
        """One batched round trip: ``(contract, function, args)`` each, answered as ints."""
        requests = [
            ("eth_call", [{"to": c.address, "data": getattr(c.functions, fn)(*args)._encode_transaction_data()},
                          "latest"])
            for c, fn, args in calls
        ]
        return [int(r["result"], 16) for r in self.w3.provider.make_batch_request(requests)]

    def send(self, call: Any, sender: str, ok: bool, reason: str | None = None) -> None:
        """Send ``call`` and check the model's prediction: success, or a revert
        (with ``reason`` as the revert message when given)."""
        self.steps += 1
        if not ok and reason is not None:
            with pytest.raises(Exception, match=re.escape(reason)):
                call.call({"from": sender})
        # A distinct gas limit per step keeps transaction hashes unique across
        # examples, which replay the same nonces after evm_revert.
        tx = call.transact({"from": sender, "gas": GAS + self.steps})
        status = self.w3.eth.wait_for_transaction_receipt(tx, timeout=10, poll_latency=0.005)["status"]
        assert status == (1 if ok else 0), (
            f"model predicted {'success' if ok else 'revert: ' + str(reason)} for "
            f"{call.fn_name}{call.args} from {sender}")


def as_address(value: int) -> str:
    return "0x" + f"{value:040x}"
