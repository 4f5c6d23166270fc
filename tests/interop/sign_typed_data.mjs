// Signs an EIP-712 payload with ethers: a second implementation of EIP-712,
// independent of the eth_account code the API and its tests use.
//
//   AMPHORA_SIGNER_KEY=0x<private key> node tests/interop/sign_typed_data.mjs < payload.json
//
// stdin: an eth_signTypedData_v4 payload ({types, primaryType, domain, message},
// `types` with its EIP712Domain entry); stdout: the 65-byte signature, 0x hex.
// ethers derives the domain type from `domain` itself and the primary type from
// `types`, so the EIP712Domain entry is left out; a payload whose primaryType is
// not the one root of its types is refused rather than signed as another type.
import { TypedDataEncoder, Wallet } from "ethers";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const payload = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const key = process.env.AMPHORA_SIGNER_KEY;
if (!key) {
  console.error("sign_typed_data: set AMPHORA_SIGNER_KEY to the signer's 0x private key");
  process.exit(2);
}

const { EIP712Domain: _domainType, ...types } = payload.types;
const primaryType = TypedDataEncoder.getPrimaryType(types);
if (primaryType !== payload.primaryType) {
  console.error(`sign_typed_data: the types' primary type is ${primaryType}, the payload says ${payload.primaryType}`);
  process.exit(1);
}

const signature = await new Wallet(key).signTypedData(payload.domain, types, payload.message);
process.stdout.write(`${signature}\n`);
