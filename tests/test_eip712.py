"""The contract's typed-data definitions match the one Python module that
the API, scripts and tests use."""

from eth_utils import keccak

from amphora import eip712


def test_transfer_typehash__matches_python_definition(cert):
    assert cert.TRANSFER_TYPEHASH() == eip712.typehash("Transfer")
    assert eip712.encode_type("Transfer") == (
        "Transfer(address from,address to,uint256 tokenId,uint256 nonce,uint256 deadline)"
    )


def test_domain_separator__matches_python_definition(cert, chain_id):
    assert cert.DOMAIN_SEPARATOR() == eip712.domain_separator(chain_id, cert.address)
    domain = eip712.domain(chain_id, cert.address)
    type_hash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    expected = keccak(
        type_hash
        + keccak(text=domain["name"])
        + keccak(text=domain["version"])
        + chain_id.to_bytes(32, "big")
        + bytes(12) + bytes.fromhex(cert.address[2:])
    )
    assert cert.DOMAIN_SEPARATOR() == expected


def test_eip5267_domain__reports_name_version_chain_and_contract(cert, chain_id):
    fields, name, version, chain, contract, salt, extensions = cert.eip712Domain()
    assert fields == b"\x0f"
    assert (name, version) == (eip712.CERTIFICATE_DOMAIN_NAME, eip712.CERTIFICATE_DOMAIN_VERSION)
    assert chain == chain_id and contract == cert.address
    assert salt == bytes(32) and list(extensions) == []


def test_python_digest__is_what_a_standard_signer_signs(cert, chain_id, holder):
    """eth_account's encode_typed_data (an independent implementation) and our
    hand-built digest agree."""
    message = eip712.transfer_message(holder.address, holder.address, 1, 0, 1)
    data = eip712.typed_data("Transfer", message, chain_id, cert.address)
    struct_hash = keccak(
        eip712.typehash("Transfer")
        + bytes(12) + bytes.fromhex(holder.address[2:])
        + bytes(12) + bytes.fromhex(holder.address[2:])
        + (1).to_bytes(32, "big") + (0).to_bytes(32, "big") + (1).to_bytes(32, "big")
    )
    assert eip712.digest(data) == keccak(b"\x19\x01" + cert.DOMAIN_SEPARATOR() + struct_hash)


#: Every certificate typed message: the contract's typehash getter and its encodeType string.
CERTIFICATE_TYPES = {
    "CreateGift": ("CREATE_GIFT_TYPEHASH", "CreateGift(address holder,uint256 tokenId,address claimKey,"
                                           "uint256 expiry,uint256 nonce,uint256 deadline)"),
    "RevokeGift": ("REVOKE_GIFT_TYPEHASH", "RevokeGift(address holder,uint256 tokenId,uint256 nonce,"
                                           "uint256 deadline)"),
    "ClaimGift": ("CLAIM_GIFT_TYPEHASH", "ClaimGift(uint256 tokenId,address recipient)"),
    "RequestRedemption": ("REQUEST_REDEMPTION_TYPEHASH", "RequestRedemption(address holder,uint256 tokenId,"
                                                         "bytes32 orderHash,uint256 nonce,uint256 deadline)"),
    "Flag": ("FLAG_TYPEHASH", "Flag(address holder,uint256 tokenId,bytes32 reasonHash,uint256 nonce,"
                              "uint256 deadline)"),
    "TagChallenge": ("TAG_CHALLENGE_TYPEHASH", "TagChallenge(uint256 tokenId,uint256 blockNumber,"
                                               "bytes32 blockHash)"),
    "InvalidateNonces": ("INVALIDATE_NONCES_TYPEHASH", "InvalidateNonces(address holder,uint256 nonce,"
                                                       "uint256 newNonce,uint256 deadline)"),
}


def test_lifecycle_typehashes__match_python_definitions(cert):
    for primary_type, (getter, encoded) in CERTIFICATE_TYPES.items():
        assert eip712.encode_type(primary_type) == encoded
        assert getattr(cert, getter)() == eip712.typehash(primary_type), primary_type


def test_lifecycle_message_builders__produce_every_field_of_their_type():
    holder, key = "0x" + "11" * 20, "0x" + "22" * 20
    h = b"\x33" * 32
    messages = {
        "CreateGift": eip712.create_gift_message(holder, 1, key, 2, 3, 4),
        "RevokeGift": eip712.revoke_gift_message(holder, 1, 3, 4),
        "ClaimGift": eip712.claim_gift_message(1, key),
        "RequestRedemption": eip712.request_redemption_message(holder, 1, h, 3, 4),
        "Flag": eip712.flag_message(holder, 1, h, 3, 4),
        "TagChallenge": eip712.tag_challenge_message(1, 2, h),
        "InvalidateNonces": eip712.invalidate_nonces_message(holder, 3, 5, 4),
    }
    for primary_type, message in messages.items():
        assert list(message) == [f["name"] for f in eip712.TYPES[primary_type]], primary_type


#: PledgeLending's typed messages: the contract's typehash getter and its encodeType string.
LENDING_TYPES = {
    "LoanOffer": ("LOAN_OFFER_TYPEHASH", "LoanOffer(address lender,address currency,uint256 lotId,uint256 tokenId,"
                                         "uint256 principal,uint256 repayment,uint256 duration,uint256 gracePeriod,"
                                         "uint256 maxLtvBps,uint256 expiry,uint256 nonce)"),
    "AcceptOffer": ("ACCEPT_OFFER_TYPEHASH", "AcceptOffer(bytes32 offerHash,uint256 tokenId,address borrower,"
                                             "uint256 deadline)"),
    "LoanExtension": ("LOAN_EXTENSION_TYPEHASH", "LoanExtension(uint256 loanId,uint256 dueAt,uint256 repayment,"
                                                 "uint256 deadline)"),
}


def test_lending_typehashes__match_python_definitions(project, manifest):
    lending = project.PledgeLending.at(manifest.address("PledgeLending"))
    for primary_type, (getter, encoded) in LENDING_TYPES.items():
        assert eip712.encode_type(primary_type) == encoded
        assert getattr(lending, getter)() == eip712.typehash(primary_type), primary_type


def test_lending_domain__matches_python_definition(project, manifest, chain_id):
    lending = project.PledgeLending.at(manifest.address("PledgeLending"))
    assert lending.DOMAIN_SEPARATOR() == eip712.domain_separator(
        chain_id, lending.address, eip712.LENDING_DOMAIN_NAME, eip712.LENDING_DOMAIN_VERSION)


def test_lending_message_builders__produce_every_field_of_their_type():
    a = "0x" + "11" * 20
    messages = {
        "LoanOffer": eip712.loan_offer_message(a, a, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        "AcceptOffer": eip712.accept_offer_message(b"\x01" * 32, 1, a, 2),
        "LoanExtension": eip712.loan_extension_message(1, 2, 3, 4),
    }
    for primary_type, message in messages.items():
        assert list(message) == [f["name"] for f in eip712.TYPES[primary_type]], primary_type
    assert eip712.loan_offer_args(messages["LoanOffer"])[2:] == (1, 2, 3, 4, 5, 6, 7, 8, 9)


def test_repayment_for_rate__simple_interest_rounded_up():
    assert eip712.repayment_for_rate(1_000_000_000, 1_000, eip712.YEAR) == 1_100_000_000
    assert eip712.repayment_for_rate(1_000_000_000, 1_000, eip712.YEAR // 2) == 1_050_000_000
    assert eip712.repayment_for_rate(1, 1, 1) == 2  # any interest rounds up to a unit
    assert eip712.repayment_for_rate(5, 0, eip712.YEAR) == 5
