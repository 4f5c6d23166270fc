"""GS1 identifiers of a bottle: GTIN, lot (AI 10), serial (AI 21), vintage (AI 22),
and the GS1 Digital Link URI that carries them.

The element strings, their character sets and lengths, the GTIN check digit and the
Digital Link URI syntax (path order, percent-encoding) come from `biip`
(https://pypi.org/project/biip/). biip's Digital Link parser accepts a GTIN whose
check digit is wrong, so :func:`parse_digital_link` checks it again with biip's
:class:`~biip.gtin.Gtin`.

Serials (AI 21) are not the bottle's number in its lot: :func:`gs1_serial` maps the
number through a keyed permutation of the 32-bit numbers whose key (the lot's
``serial_salt``) is committed in the lot document. Two scanned bottles show two
unrelated-looking serials (nothing about the lot's size or the bottles' order), yet
anyone holding the lot document can turn a serial back into the token id with
:func:`serial_number`, or check a serial against a token id, and the resolver needs
no table to do it. See docs/gs1.md for why this is sound.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings
from biip.gtin import Gtin
from eth_utils import keccak

#: GS1's prefix 952 is reserved for demonstrations and examples.
DEMO_PREFIX = "952"
#: A serial: the 32-bit permuted bottle number in RFC 4648 base32, without padding.
SERIAL_LENGTH = 7
SALT_BYTES = 32
_ROUNDS = 4
_SERIAL_RE = re.compile(r"^[A-Z2-7]{7}$")


class GS1Error(ValueError):
    """An identifier or URI that GS1's rules reject; the message says which rule."""


def check_digit(payload: str) -> int:
    """The GS1 mod-10 check digit of a string of digits (GTIN without its last digit)."""
    if not payload.isdigit():
        raise GS1Error(f"{payload!r} is not all digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def validate_gtin(value: str) -> str:
    """``value`` as a GTIN-14 (shorter GTINs are left-padded with zeros) if it has
    8, 12, 13 or 14 digits and a correct check digit; else :class:`GS1Error`."""
    if not isinstance(value, str) or not value.isdigit() or len(value) not in (8, 12, 13, 14):
        raise GS1Error(f"GTIN {value!r}: a GTIN has 8, 12, 13 or 14 digits")
    try:
        return Gtin.parse(value).as_gtin_14()
    except ParseError as err:
        raise GS1Error(f"GTIN {value!r}: {err}") from err


def _element(ai: str, value: str, what: str) -> GS1ElementString:
    if not isinstance(value, str) or not value:
        raise GS1Error(f"{what}: must be a non-empty string")
    try:
        return GS1ElementString.parse(ai + value)
    except ParseError as err:
        raise GS1Error(f"{what} {value!r}: at most 20 characters of GS1's character set 82 ({err})") from err


def validate_lot(value: str) -> str:
    """A lot or batch code (AI 10): 1 to 20 characters of GS1's character set 82, and
    not ``.`` or ``..`` (a URI path segment of only dots is removed by every client's
    path normalisation, RFC 3986 §5.2.4, so such a lot could never be resolved)."""
    if value in (".", ".."):
        raise GS1Error(f"lot: {value!r} cannot be carried in a Digital Link (a path segment of dots)")
    return _element("10", value, "lot").value


def validate_serial(value: str) -> str:
    """A serial (AI 21): 1 to 20 characters of GS1's character set 82."""
    return _element("21", value, "serial").value


def validate_vintage(value: str) -> str:
    """A vintage carried as the consumer product variant (AI 22): the year's four digits."""
    _element("22", value, "vintage")
    if not re.fullmatch(r"[12]\d{3}", value):
        raise GS1Error(f"vintage {value!r}: a vintage is a four-digit year")
    return value


# -- serials ----------------------------------------------------------------------------------


def new_salt() -> str:
    """A fresh ``serial_salt`` for a lot document."""
    return "0x" + secrets.token_bytes(SALT_BYTES).hex()


def _salt(salt: str) -> bytes:
    raw = bytes.fromhex(salt.removeprefix("0x"))
    if len(raw) != SALT_BYTES:
        raise GS1Error(f"serial_salt: {SALT_BYTES} bytes of hex expected")
    return raw


def _round(key: bytes, i: int, half: int) -> int:
    return int.from_bytes(keccak(key + bytes([i]) + half.to_bytes(2, "big"))[:2], "big")


def _permute(key: bytes, value: int, inverse: bool = False) -> int:
    """A four-round Feistel network over 32-bit numbers with keccak256 as its round
    function: a bijection (so serials never collide) whose inverse needs the key."""
    left, right = value >> 16, value & 0xFFFF
    if not inverse:
        for i in range(_ROUNDS):
            left, right = right, left ^ _round(key, i, right)
    else:
        for i in reversed(range(_ROUNDS)):
            left, right = right ^ _round(key, i, left), left
    return (left << 16) | right


#: Serials and paths computed per process: a resolver answers the same bottles again and again,
#: and each costs four keccak rounds or a GS1 element-string build.
_CACHED = 65_536


@lru_cache(maxsize=_CACHED)
def gs1_serial(salt: str, number: int) -> str:
    """The GS1 serial (AI 21) printed on bottle ``number`` of a lot whose document
    commits ``salt``: seven base32 characters."""
    if not 0 <= number < 2**32:
        raise GS1Error(f"bottle number {number} is out of range")
    code = _permute(_salt(salt), number).to_bytes(4, "big")
    return base64.b32encode(code).decode().rstrip("=")


@lru_cache(maxsize=_CACHED)
def serial_number(salt: str, serial: str) -> int | None:
    """The bottle number that ``serial`` stands for in the lot whose document commits
    ``salt``, or None if ``serial`` is not of the form :func:`gs1_serial` makes."""
    if not _SERIAL_RE.fullmatch(serial):
        return None
    code = int.from_bytes(base64.b32decode(serial + "="), "big")
    if gs1_serial(salt, _permute(_salt(salt), code, inverse=True)) != serial:
        return None  # a non-canonical base32 spelling of the same 32 bits
    return _permute(_salt(salt), code, inverse=True)


# -- Digital Link URIs ------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitalLink:
    """The identifiers a bottle's Digital Link URI carries (GTIN-14 and its qualifiers)."""

    gtin: str
    lot: str | None = None
    serial: str | None = None
    vintage: str | None = None

    def path(self) -> str:
        """The URI's path, e.g. ``/01/09520000000013/22/2019/10/L1/21/ABCDEFG``."""
        return _path(self)

    def uri(self, base_url: str) -> str:
        """The URI under ``base_url`` (the resolver's scheme, host and any path prefix)."""
        return base_url.rstrip("/") + self.path()


@lru_cache(maxsize=_CACHED)
def _path(link: DigitalLink) -> str:
    """:meth:`DigitalLink.path`, built with biip once per link (an invalid link raises each time)."""
    elements = GS1ElementStrings([GS1ElementString.parse("01" + validate_gtin(link.gtin))])
    if link.vintage is not None:
        elements.append(_element("22", validate_vintage(link.vintage), "vintage"))
    if link.lot is not None:
        elements.append(_element("10", link.lot, "lot"))
    if link.serial is not None:
        elements.append(_element("21", link.serial, "serial"))
    return urlsplit(GS1DigitalLinkURI.from_element_strings(elements).as_uri()).path


def parse_digital_link(uri: str) -> DigitalLink:
    """Parse a Digital Link URI (or just its path) for a GTIN with at most AI 22, 10
    and 21 as qualifiers, in that order. Anything else is a :class:`GS1Error` that
    says what is wrong: a bad check digit, qualifiers out of order, a value too long
    or outside GS1's character set, a data attribute (e.g. AI 17) in the path."""
    if uri.startswith("/"):
        uri = "https://resolver.invalid" + uri
    parts = urlsplit(uri)
    segments = parts.path.split("/")
    try:
        start = segments.index("01")
    except ValueError:
        raise GS1Error("the path has no GTIN (AI 01)") from None
    if any(s == "" for s in segments[start:]):
        raise GS1Error("empty path segment")
    try:
        parsed = GS1DigitalLinkURI.parse(parts._replace(query="", fragment="").geturl())
    except ParseError as err:
        hint = " (a lot or serial is 1 to 20 characters of GS1's character set 82)" if "pattern" in str(err) else ""
        raise GS1Error(f"{err}{hint}") from err
    values = {e.ai.ai: e.value for e in parsed.element_strings}
    if set(values) - {"01", "10", "21", "22"}:
        raise GS1Error(f"unsupported qualifier(s): {', '.join(sorted(set(values) - {'01', '10', '21', '22'}))}")
    return DigitalLink(gtin=validate_gtin(segments[start + 1]), lot=values.get("10"), serial=values.get("21"),
                       vintage=validate_vintage(values["22"]) if "22" in values else None)


def demo_gtin(item_reference: str) -> str:
    """A GTIN-14 under GS1's demonstration prefix 952 with a correct check digit."""
    payload = ("0" + DEMO_PREFIX + item_reference).ljust(13, "0")[:13]
    return payload + str(check_digit(payload))
