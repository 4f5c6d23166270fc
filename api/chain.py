"""The chain service: everything the API reads from the node, through web3.py.

The service connects lazily: building it makes no request, so the API starts
(and imports) without a node. The first request resolves the node's chain id,
loads the deploy manifest and binds the WineCertificate contract; a failure
there is reported on that request (503) and retried on the next one. The
tokens (stablecoin, points, utility token) are bound from the same manifest
when first used; an older manifest may lack them, which the callers handle.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import ChecksumAddress
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    Web3RPCError,
)
from web3.types import BlockIdentifier, RPCEndpoint

from amphora import eip712
from amphora.manifest import Manifest, ManifestError, manifest_path
from amphora.settlement import reserve_at
from api.errors import NotDeployed, UpstreamUnavailable
from api.redact import ScrubFilter, scrub
from api.settings import Settings

logger = logging.getLogger(__name__)
logger.addFilter(ScrubFilter())  # node and webhook URLs carry credentials: never log one

#: Contract names in the deploy manifest.
CERTIFICATE = "WineCertificate"
STABLECOIN = "Stablecoin"
POINTS = "PointsToken"
UTILITY = "UtilityToken"
CUSTODY = "CustodyRegistry"
LENDING = "PledgeLending"
_REVERT_PREFIX = "execution reverted"
#: How long a contract seen with code is not checked again (a node reset is the only way to lose it).
CODE_CHECK_SECONDS = 30.0
#: Struct reads remembered per block hash (:meth:`ChainService.struct_at`): about 2 KB each.
STRUCT_READS_KEPT = 8_192
#: ERC-1271: what ``isValidSignature`` returns for a valid signature.
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
_ERC1271_ABI = [{
    "type": "function", "name": "isValidSignature", "stateMutability": "view",
    "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
    "outputs": [{"name": "", "type": "bytes4"}],
}]
#: How many bitmap words (256 nonces each) of a payer's EIP-3009 nonces the API
#: reads looking for a free one before it falls back to a random nonce.
NONCE_WORDS_SCANNED = 8
#: At most this many (token, payer, caller) reservation lists are kept in memory;
#: the least recently used goes first.
NONCE_RESERVATION_LISTS = 10_000


@dataclass(frozen=True)
class CertificateRecord:
    """The contract's ``Certificate`` struct, as ``certificate(token_id)`` returns it."""

    exists: bool
    token_id: int
    lot_id: int
    serial: int
    owner: str
    state: int
    locked: bool
    issuer: str
    issuer_name: str
    issuer_active: bool
    custodian: str
    custodian_name: str
    custodian_active: bool
    bottle_count: int
    vintage: int
    volume_ml: int
    bottling_date: int
    issued_at: int
    metadata_hash: bytes
    tag_root: bytes
    # Lifecycle details (zero unless the state has them): the flag, the pending
    # gift, the redemption.
    flag_reason_hash: bytes
    flagged_by_issuer: bool
    gift_claim_key: str
    gift_expiry: int
    redemption_order_hash: bytes
    redeemed_at: int
    redeemed_by: str

    @property
    def issued(self) -> bool:
        """Whether the token was ever issued. ``exists`` turns false on redemption,
        but a redeemed certificate keeps its lot; a never-issued one has lot 0."""
        return self.lot_id != 0

    @property
    def holder(self) -> str | None:
        return None if int(self.owner, 16) == 0 else self.owner


@dataclass(frozen=True)
class Token:
    """An ERC-20 of the deployment, with the symbol and decimals it reported
    (read once: neither changes after deployment)."""

    name: str
    contract: Contract
    symbol: str
    decimals: int

    @property
    def address(self) -> ChecksumAddress:
        return self.contract.address


@dataclass(frozen=True)
class Eip712Domain:
    name: str
    version: str
    chain_id: int
    verifying_contract: str


def revert_reason(err: ContractLogicError) -> str:
    """The contract's revert string from a web3 error ("certificate: invalid nonce")."""
    message = (err.message or "").strip()
    if message.startswith(_REVERT_PREFIX):
        message = message[len(_REVERT_PREFIX):].lstrip(": ").strip()
    return message or "the transaction would revert (no reason given)"


def abi_type(param: dict[str, Any]) -> str:
    """The canonical ABI type of an input or output (structs as tuples)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in param["components"]) + ")" + kind[len("tuple"):]
    return kind


def _named(output: dict[str, Any], value: Any) -> Any:
    """A decoded ABI value with its structs (tuples) as dicts by component name, nested;
    addresses checksummed (as web3's contract calls give them)."""
    if output.get("type") == "address":
        return to_checksum_address(value)
    if not str(output.get("type", "")).startswith("tuple"):
        return value
    return {component["name"]: _named(component, item)
            for component, item in zip(output["components"], value, strict=True)}


@dataclass(frozen=True)
class BlockRef:
    """The block a set of reads was made at."""

    number: int
    hash: bytes
    timestamp: int


def _has_function(contract: Contract, name: str) -> bool:
    """Whether ``contract``'s ABI (as the manifest recorded it) has function ``name``."""
    return any(item.get("name") == name for item in contract.abi)


def contract_label(name: str) -> str:
    """How errors name the manifest's contract ``name``."""
    return "the certificate contract" if name == CERTIFICATE else f"the {name} contract"


@contextmanager
def node_errors(subject: str = "the certificate contract") -> Iterator[None]:
    """Report an unreachable or failing node as :class:`UpstreamUnavailable`, and
    a call to ``subject`` that answers nothing (no code at its address) as
    :class:`NotDeployed`."""
    try:
        yield
    except (requests.RequestException, ProviderConnectionError, OSError) as err:
        logger.warning("node unreachable: %s", type(err).__name__)
        raise UpstreamUnavailable("the blockchain node cannot be reached") from err
    except Web3RPCError as err:
        message = scrub(err.message or "")
        logger.warning("node error: %s", message)
        raise UpstreamUnavailable(f"the blockchain node answered with an error: {message}") from err
    except BadFunctionCallOutput as err:
        raise NotDeployed(f"{subject} answered nothing: the manifest's address has "
                          "no contract on this chain (was the node reset? redeploy)") from err


def node_session() -> requests.Session:
    """An HTTP session for the node that skips, on every request, the proxy
    variables and ``~/.netrc`` lookup of ``requests`` (a file system stat and a
    scan of the environment per call; under load, a large share of the
    relayer's time). Put credentials for the node in its URL."""
    session = requests.Session()
    session.trust_env = False
    return session


class ChainService:
    """Reads the WineCertificate and the node for the API."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        provider = Web3.HTTPProvider(
            settings.rpc_url,
            request_kwargs={"timeout": settings.rpc_timeout},
            exception_retry_configuration=None,
            session=node_session(),
        )
        self.w3 = Web3(provider)
        # Per call, web3's validation middleware asks the node for its chain id (an extra
        # round trip for every eth_call and gas estimate) and the ENS middleware scans the
        # arguments for names; the API sends no transactions through web3 and takes no ENS names.
        self.w3.middleware_onion.remove("validation")
        self.w3.middleware_onion.remove("ens_name_to_address")
        self._load_lock = threading.Lock()
        self._chain_id: int | None = None
        self._manifest: Manifest | None = None
        self._contracts: dict[str, Contract] = {}
        self._tokens: dict[str, Token] = {}
        self._certificate_symbol: str | None = None
        self._domains: dict[str, Eip712Domain] = {}
        self._layouts: dict[tuple[str, str], tuple[bytes, list[str]]] = {}
        #: (contract, function, args, block hash) => decoded struct: a read at a named block never changes.
        self._struct_reads: OrderedDict[tuple[str, str, tuple[Any, ...], bytes], dict[str, Any]] = OrderedDict()
        self._struct_lock = threading.Lock()
        self._code_seen: dict[str, float] = {}
        self._nonce_lock = threading.Lock()
        #: (token, payer, caller) -> {nonce: expiry}, oldest first; least recently used first.
        self._reserved_nonces: OrderedDict[tuple[str, str, str], dict[int, float]] = OrderedDict()

    # ------------------------------------------------------------ bindings

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with node_errors():
                self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def chain_id_known(self) -> bool:
        """Whether :attr:`chain_id` answers without asking the node (it is asked once)."""
        return self._chain_id is not None

    def _manifest_path(self) -> Path:
        return self._settings.manifest_path or manifest_path(self.chain_id)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            with self._load_lock:
                if self._manifest is None:
                    self._manifest = self._load_manifest()
        return self._manifest

    def _load_manifest(self) -> Manifest:
        try:
            manifest = Manifest.load(self._manifest_path())
            manifest.address(CERTIFICATE)
        except ManifestError as err:
            raise NotDeployed(str(err)) from err
        if manifest.chain_id != self.chain_id:
            raise NotDeployed(f"the deploy manifest is for chain {manifest.chain_id}, "
                              f"but the node is chain {self.chain_id}")
        logger.info("certificate contract %s on chain %d", manifest.address(CERTIFICATE), self.chain_id)
        return manifest

    def contract(self, name: str) -> Contract | None:
        """The manifest's contract ``name`` bound to the node; None when the
        manifest records no such contract (a deployment older than it)."""
        contract = self._contracts.get(name)
        if contract is None:
            manifest = self.manifest
            if name not in manifest.contracts:
                return None
            contract = self.w3.eth.contract(address=to_checksum_address(manifest.address(name)),
                                            abi=manifest.abi(name))
            self._contracts[name] = contract
        return contract

    def require_contract(self, name: str) -> Contract:
        """:meth:`contract`, or :class:`NotDeployed` when the manifest lacks it."""
        contract = self.contract(name)
        if contract is None:
            raise NotDeployed(f"the deploy manifest for chain {self.chain_id} records no {name}: "
                              "deploy it with `ape run deploy`")
        return contract

    @property
    def certificate_contract(self) -> Contract:
        return self.require_contract(CERTIFICATE)

    @property
    def certificate_address(self) -> ChecksumAddress:
        return self.certificate_contract.address

    def deploy_block_of(self, name: str) -> int:
        """The block the manifest says ``name`` was deployed in (0 if it does not say)."""
        return int(self.manifest.contract(name).get("deploy_block") or 0)

    @property
    def deploy_block(self) -> int:
        return self.deploy_block_of(CERTIFICATE)

    def token(self, name: str) -> Token | None:
        """The manifest's ERC-20 ``name`` with its symbol and decimals; None when
        the manifest records no such contract."""
        token = self._tokens.get(name)
        if token is None:
            contract = self.contract(name)
            if contract is None:
                return None
            with node_errors(contract_label(name)):
                symbol = str(contract.functions.symbol().call())
                decimals = int(contract.functions.decimals().call())
            token = self._tokens[name] = Token(name, contract, symbol, decimals)
        return token

    @property
    def certificate_symbol(self) -> str:
        """The certificate collection's ERC-721 symbol (read once)."""
        if self._certificate_symbol is None:
            with node_errors():
                self._certificate_symbol = str(self.certificate_contract.functions.symbol().call())
        return self._certificate_symbol

    def authorization_token(self, name: str) -> Contract:
        """The manifest's token ``name``, if it accepts EIP-3009 transfers with
        authorization (:class:`NotDeployed` otherwise)."""
        contract = self.require_contract(name)
        if not _has_function(contract, "transferWithAuthorization"):
            raise NotDeployed(f"the {name} at {contract.address} has no transferWithAuthorization (EIP-3009) "
                              "in its ABI: redeploy it with `ape run deploy`")
        return contract

    def free_authorization_nonce(self, name: str, payer: str, valid_before: int,
                                 claim: Callable[[int, float], bool] | None = None,
                                 caller: str = "anonymous") -> bytes:
        """A nonce for a new EIP-3009 authorization of ``payer`` on token ``name``.

        The token keeps used nonces as a bitmap, 256 to a storage word: a nonce
        in a word the payer already used costs 5,000 gas to consume, a nonce in
        a new word 22,100. So this picks a clear bit, at random, in the lowest
        word that has one, skipping nonces this process handed out to the same
        ``caller`` (an account, or a client address) that may still be signed
        and relayed. Those reservations are the caller's own, so one caller
        cannot make another's nonces dearer; they are few (at most
        ``relay_nonce_reservations_per_caller`` per caller and payer, the
        oldest dropped first) and short (``relay_nonce_reservation_seconds``,
        or until ``valid_before`` if sooner). Random rather than lowest-first,
        so that two callers (or instances) answering the same payer at once
        rarely pick the same nonce; if they do, the second relay is refused as
        used and the holder signs again.
        ``claim(nonce, until)``, when given, reserves the nonce in a store
        shared by every instance and across restarts (the outbox's database)
        and answers False when another request holds it: then another nonce is
        picked, so two instances never hand out the same one.
        Falls back to a random 32-byte nonce when the token has no
        ``authorization_bitmap`` or the scanned words are full."""
        contract = self.authorization_token(name)
        if not _has_function(contract, "authorization_bitmap"):
            return secrets.token_bytes(32)
        owner = to_checksum_address(payer)
        now = time.time()
        until = min(float(valid_before), now + self._settings.relay_nonce_reservation_seconds)
        bound = self._settings.relay_nonce_reservations_per_caller
        for word in range(NONCE_WORDS_SCANNED):
            # Read the word without holding the lock: every payer's requests share it.
            bits = self.read_uint(contract, "authorization_bitmap", owner, word)
            while True:
                with self._nonce_lock:
                    reserved = self._reservations((name, owner, caller), now)
                    free = [word * 256 + bit for bit in range(256)
                            if not (bits >> bit) & 1 and word * 256 + bit not in reserved]
                    if not free:
                        break
                    nonce = secrets.choice(free)
                    reserved[nonce] = until
                    while len(reserved) > bound:
                        del reserved[next(iter(reserved))]
                if claim is None or claim(nonce, until):
                    return nonce.to_bytes(32, "big")
        return secrets.token_bytes(32)

    def _reservations(self, key: tuple[str, str, str], now: float) -> dict[int, float]:
        """The live reservations of ``key`` (the lock held), made the most
        recently used; the least recently used lists beyond the bound go."""
        reserved = self._reserved_nonces.pop(key, {})
        for nonce in [n for n, expiry in reserved.items() if expiry <= now]:
            del reserved[nonce]
        self._reserved_nonces[key] = reserved
        while len(self._reserved_nonces) > NONCE_RESERVATION_LISTS:
            self._reserved_nonces.popitem(last=False)
        return reserved

    def reserved_nonce_count(self) -> int:
        """How many EIP-3009 nonce reservations are live in this process."""
        now = time.time()
        with self._nonce_lock:
            return sum(1 for reserved in self._reserved_nonces.values() for expiry in reserved.values()
                       if expiry > now)

    # --------------------------------------------------------------- node

    def latest_block(self) -> int:
        with node_errors():
            return int(self.w3.eth.block_number)

    def balance(self, address: str, block: BlockIdentifier = "latest") -> int:
        """ETH held by ``address``, in wei."""
        with node_errors():
            return int(self.w3.eth.get_balance(to_checksum_address(address), block_identifier=block))

    def has_code(self, address: str) -> bool:
        with node_errors():
            return len(self.w3.eth.get_code(to_checksum_address(address))) > 0

    def read_uint(self, contract: Contract, function: str, *args: Any) -> int:
        """A view function's one ``uint256`` result at the latest block, read
        with one plain ``eth_call`` (no web3 contract machinery)."""
        to, data = self.calldata(contract, function, *args)
        with node_errors(f"the contract at {to}"):
            answer = self.w3.provider.make_request(RPCEndpoint("eth_call"), [{"to": to, "data": data}, "latest"])
        if "error" in answer:
            raise UpstreamUnavailable(f"the blockchain node answered with an error: {answer['error']}")
        result = str(answer["result"])
        if result in ("0x", ""):
            raise NotDeployed(f"the contract at {to} answered nothing to {function}: no code there?")
        return int(result, 16)

    def calldata(self, contract: Contract, function: str, *args: Any) -> tuple[str, str]:
        """``(address, calldata)`` of ``contract.function(*args)``, encoded with the
        function's selector and input types computed once per process (web3's
        contract objects hash the signature again on every call; the relayer's
        hot path cannot afford that)."""
        selector, types = self.function_layout(contract, function)
        return contract.address, "0x" + (selector + abi_encode(types, list(args))).hex()

    def function_layout(self, contract: Contract, function: str) -> tuple[bytes, list[str]]:
        """The 4-byte selector and input ABI types of ``contract.function``,
        computed once per process (ValueError if the ABI has no such function)."""
        key = (contract.address, function)
        layout = self._layouts.get(key)
        if layout is None:
            abi = contract.get_function_by_name(function).abi
            types = [abi_type(i) for i in abi["inputs"]]
            selector = function_signature_to_4byte_selector(f"{function}({','.join(types)})")
            layout = self._layouts[key] = (selector, types)
        return layout

    def require_code(self, address: str) -> None:
        """Raise :class:`NotDeployed` unless the manifest's contract at ``address`` has
        code. A contract seen with code is believed for ``CODE_CHECK_SECONDS``."""
        seen = self._code_seen.get(address)
        if seen is not None and time.monotonic() - seen < CODE_CHECK_SECONDS:
            return
        if self.has_code(address):
            self._code_seen[address] = time.monotonic()
        else:
            raise NotDeployed(f"no contract at {address} on chain {self.chain_id}: "
                              "the manifest is stale (was the node reset? redeploy)")

    def require_deployed(self, name: str = CERTIFICATE) -> None:
        """Raise :class:`NotDeployed` unless the manifest's contract ``name`` has code."""
        self.require_code(self.require_contract(name).address)

    # ------------------------------------------------------------- tokens

    def certificates_held(self, owner: str, block: BlockIdentifier = "latest") -> int:
        """How many certificates ``owner`` holds (``balanceOf``; 0 for the zero
        address, which the contract refuses to be asked about)."""
        if int(owner, 16) == 0:
            return 0
        with node_errors():
            return int(self.certificate_contract.functions.balanceOf(to_checksum_address(owner)).call(
                block_identifier=block))

    def token_balance(self, token: Token, owner: str, block: BlockIdentifier = "latest") -> int:
        """``token.balanceOf(owner)`` in the token's smallest unit."""
        with node_errors(contract_label(token.name)):
            return int(token.contract.functions.balanceOf(to_checksum_address(owner)).call(
                block_identifier=block))

    def points_reserve(self, block: int) -> int:
        """The PointsToken's ``reserve()`` at ``block`` (0 before it existed).
        Before the manifest's deploy block the answer is 0 without asking the
        node: a node that keeps no state that old (a pruned full node, or anvil
        after it let old states go) could not answer, and a statement starting
        on the token's first day reads the reserve just before it."""
        if block < self.deploy_block_of(POINTS):
            return 0
        points = self.require_contract(POINTS)
        with node_errors(contract_label(POINTS)):
            return reserve_at(self.w3, points.address, self.manifest.abi(POINTS), block)

    # -------------------------------------------------------- certificate

    def struct_at(self, contract: Contract, function: str, args: tuple[Any, ...], block: BlockRef) -> dict[str, Any]:
        """``contract.function(*args)``'s one struct result by field name, read at
        ``block`` named by its hash (EIP-1898): one plain ``eth_call``, encoded and
        decoded with layouts computed once, and remembered per block hash (a read
        at a given block never changes; a reorganised-away block is simply never
        asked for again). The verification page reads two structs per view."""
        key = (contract.address, function, args, block.hash)
        with self._struct_lock:
            cached = self._struct_reads.get(key)
            if cached is not None:
                self._struct_reads.move_to_end(key)
                return cached
        output = contract.get_function_by_name(function).abi["outputs"][0]
        to, data = self.calldata(contract, function, *args)
        with node_errors(f"the contract at {to}"):
            answer = self.w3.provider.make_request(RPCEndpoint("eth_call"), [
                {"to": to, "data": data}, {"blockHash": "0x" + block.hash.hex(), "requireCanonical": False}])
        if "error" in answer:
            raise UpstreamUnavailable(f"the blockchain node answered with an error: {answer['error']}")
        raw = bytes.fromhex(str(answer["result"]).removeprefix("0x"))
        if not raw:
            raise NotDeployed(f"the contract at {to} answered nothing to {function}: no code there?")
        value = dict(_named(output, abi_decode([abi_type(output)], raw)[0]))
        with self._struct_lock:
            self._struct_reads[key] = value
            if len(self._struct_reads) > STRUCT_READS_KEPT:
                self._struct_reads.popitem(last=False)
        return value

    def certificate_at(self, token_id: int, block: BlockRef) -> CertificateRecord:
        """``certificate(token_id)`` at ``block`` (see :meth:`struct_at`)."""
        return CertificateRecord(**self.struct_at(self.certificate_contract, "certificate", (token_id,), block))

    def custody_at(self, token_id: int, block: BlockRef) -> dict[str, Any] | None:
        """``CustodyRegistry.custody(token_id)`` at ``block`` (see :meth:`struct_at`);
        None when the manifest has no CustodyRegistry."""
        registry = self.contract(CUSTODY)
        if registry is None:
            return None
        return self.struct_at(registry, "custody", (token_id,), block)

    def certificate(self, token_id: int, block: BlockIdentifier = "latest") -> CertificateRecord:
        function = self.certificate_contract.get_function_by_name("certificate")
        with node_errors():
            result = function(token_id).call(block_identifier=block)
        # The struct's fields by name, as the manifest's ABI lists them.
        names = [c["name"] for c in function.abi["outputs"][0]["components"]]
        return CertificateRecord(**dict(zip(names, result, strict=True)))

    # ------------------------------------------------------------ lending

    def lending_contract(self, function: str = "collateral") -> Contract:
        """The manifest's PledgeLending, if its ABI has ``function``
        (:class:`NotDeployed` otherwise)."""
        contract = self.require_contract(LENDING)
        if not _has_function(contract, function):
            raise NotDeployed(f"the {LENDING} at {contract.address} has no {function} in its ABI: "
                              "redeploy it with `ape run deploy`")
        return contract

    def collateral(self, token_id: int) -> tuple[BlockRef, dict[str, Any]]:
        """``PledgeLending.collateral(token_id)`` by field name (nested structs as
        dicts), read at the latest block, named by its hash so that a new block
        between the two requests cannot mix states; returns that block too."""
        function = self.lending_contract().get_function_by_name("collateral")
        with node_errors(contract_label(LENDING)):
            block = self.w3.eth.get_block("latest")
            result = function(token_id).call(block_identifier=block["hash"])
        ref = BlockRef(int(block["number"]), bytes(block["hash"]), int(block["timestamp"]))
        return ref, _named(function.abi["outputs"][0], result)

    def lending_nonce_used(self, lender: str, nonce: int, block: BlockIdentifier = "latest") -> bool:
        """Whether ``lender``'s offers with ``nonce`` can no longer be accepted."""
        contract = self.lending_contract("nonce_used")
        with node_errors(contract_label(LENDING)):
            return bool(contract.functions.nonce_used(to_checksum_address(lender), nonce).call(
                block_identifier=block))

    def appraisal(self, lot_id: int, block: BlockIdentifier = "latest") -> dict[str, Any]:
        """``PledgeLending.appraisal(lot_id)`` by field name."""
        function = self.lending_contract("appraisal").get_function_by_name("appraisal")
        with node_errors(contract_label(LENDING)):
            result = function(lot_id).call(block_identifier=block)
        return dict(_named(function.abi["outputs"][0], result))

    def erc1271_valid(self, account: str, digest: bytes, signature: bytes) -> bool:
        """Whether contract ``account`` accepts ``signature`` of ``digest`` (ERC-1271
        ``isValidSignature``); False for an account without code or that reverts."""
        if not self.has_code(account):
            return False
        wallet = self.w3.eth.contract(address=to_checksum_address(account), abi=_ERC1271_ABI)
        with node_errors(f"the contract at {account}"):
            try:
                magic = bytes(wallet.functions.isValidSignature(digest, signature).call())
            except (ContractLogicError, BadFunctionCallOutput, ValueError):
                return False
        return magic == ERC1271_MAGIC

    def latest_block_ref(self) -> BlockRef:
        """The newest block's number, hash and time: one plain ``eth_getBlockByNumber``
        without transactions (web3's block formatting costs more than the call)."""
        with node_errors():
            answer = self.w3.provider.make_request(RPCEndpoint("eth_getBlockByNumber"), ["latest", False])
        block = answer.get("result")
        if "error" in answer or not block:
            raise UpstreamUnavailable(f"the blockchain node answered with an error: {answer.get('error')}")
        return BlockRef(int(block["number"], 16), bytes.fromhex(block["hash"].removeprefix("0x")),
                        int(block["timestamp"], 16))

    def verify_tag(self, token_id: int, tag: str, proof: list[bytes]) -> bool:
        with node_errors():
            return bool(self.certificate_contract.functions.verify_tag(
                token_id, to_checksum_address(tag), proof).call())

    def verify_tag_signature(self, token_id: int, block_number: int, signature: bytes,
                             proof: list[bytes]) -> bool:
        """The certificate's own check of a tag's answer to a challenge. A
        signature no key recovers from (a high ``s``, a zero ``r`` or ``s``, a
        ``v`` other than 27 or 28) answers false like any wrong signature."""
        with node_errors():
            # On the pending block, so that the newest block's hash is known.
            return bool(self.certificate_contract.functions.verify_tag_signature(
                token_id, block_number, signature, proof).call(block_identifier="pending"))

    def recover_tag_signer(self, token_id: int, block_number: int, signature: bytes) -> str | None:
        """Who signed the challenge for ``token_id`` at ``block_number`` (None if
        nobody: a malformed signature)."""
        with node_errors():
            block_hash = bytes(self.w3.eth.get_block(block_number)["hash"])
        domain = self.eip712_domain()
        data = eip712.typed_data("TagChallenge", eip712.tag_challenge_message(token_id, block_number, block_hash),
                                 domain.chain_id, domain.verifying_contract, name=domain.name,
                                 version=domain.version)
        try:
            return str(Account.recover_message(encode_typed_data(full_message=data), signature=signature))
        except Exception:  # an unrecoverable signature
            return None

    def tag_challenge_window(self) -> int:
        """``TAG_CHALLENGE_WINDOW``: how many blocks a challenge stays answerable."""
        with node_errors():
            return int(self.certificate_contract.functions.TAG_CHALLENGE_WINDOW().call())

    def recent_block(self) -> tuple[int, bytes]:
        """The newest block's number and hash (a challenge is bound to it; the
        contract accepts answers from the next block on)."""
        with node_errors():
            block = self.w3.eth.get_block("latest")
        return int(block["number"]), bytes(block["hash"])

    def latest_timestamp(self) -> int:
        with node_errors():
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def custody(self, token_id: int, block: BlockIdentifier = "latest") -> dict[str, Any] | None:
        """``CustodyRegistry.custody(token_id)`` by field name; None when the
        manifest has no CustodyRegistry. (The storage document's URI is in the
        ``StorageAttested`` event only: the index has it.)"""
        registry = self.contract(CUSTODY)
        if registry is None:
            return None
        function = registry.get_function_by_name("custody")
        with node_errors(contract_label(CUSTODY)):
            result = function(token_id).call(block_identifier=block)
        names = [c["name"] for c in function.abi["outputs"][0]["components"]]
        return dict(zip(names, result, strict=True))

    def nonce(self, owner: str) -> int:
        """The nonce the next signed transfer of ``owner`` must carry, counting
        transactions already in the node's pool."""
        with node_errors():
            return int(self.certificate_contract.functions.nonces(to_checksum_address(owner)).call(
                block_identifier="pending"))

    def eip712_domain(self, contract_name: str = CERTIFICATE) -> Eip712Domain:
        """The EIP-712 domain of the manifest's contract ``contract_name`` as the
        contract reports it (ERC-5267 ``eip712Domain()``)."""
        domain = self._domains.get(contract_name)
        if domain is None:
            contract = self.require_contract(contract_name)
            with node_errors(contract_label(contract_name)):
                _, name, version, chain_id, verifying_contract, _, _ = contract.functions.eip712Domain().call()
            domain = self._domains[contract_name] = Eip712Domain(
                str(name), str(version), int(chain_id), to_checksum_address(verifying_contract))
        return domain

    # -------------------------------------------------------- transactions

    def fee_fields(self) -> dict[str, int]:
        """EIP-1559 fee fields from the node (legacy ``gasPrice`` where it has no base fee)."""
        with node_errors():
            block = self.w3.eth.get_block("latest")
            base_fee = block.get("baseFeePerGas")
            if base_fee is None:
                return {"gasPrice": int(self.w3.eth.gas_price)}
            try:
                tip = int(self.w3.eth.max_priority_fee)
            except (Web3RPCError, ValueError):
                tip = 0
            return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base_fee) + tip}

    def pending_nonce(self, address: str) -> int:
        with node_errors():
            return int(self.w3.eth.get_transaction_count(to_checksum_address(address), "pending"))


