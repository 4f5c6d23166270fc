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
