"""QR codes for the two links Amphora prints or hands over: a bottle's GS1 Digital Link
URI and a gift's claim link. No I/O: every function returns bytes or a string.

The codes are made by `segno` (https://pypi.org/project/segno/, ISO/IEC 18004) and
drawn plain: dark modules on white, a four-module quiet zone, nothing laid over the
code (no logo: a logo is drawn over modules and spends the error correction that a
worn label needs).

**Error correction level Q** (about 25 % of the codewords can be restored). A bottle's
label is curved, printed on textured paper, and lives in cellars, ice buckets and
shipping cartons, so it gets scuffed, wet and creased; M restores 15 %. For a
Digital Link of about 75 characters Q costs one QR version over M (41 instead of 37
modules a side, 2 mm more at 0.5 mm a module), which a back label has room for.
segno raises the level further (to H) when that costs no extra modules.

**Size.** A module is at least :data:`MIN_MODULE_MM` (0.4 mm, about GS1's minimum
X-dimension of 0.396 mm for QR codes read by consumers' phones); :data:`MODULE_MM`,
0.5 mm, is the default. SVGs carry their physical size in millimetres, so a layout
program places them at exactly that size.

**Encoding.** The URI is encoded byte for byte as given (byte mode). GS1 allows the
scheme and host in upper case so that more of the URI fits QR's denser
alphanumeric mode, but a lot code or serial is case-sensitive, so this module does
not change the text: a decoder gets back exactly the URI it was given.
"""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import segno
from eth_keys import keys
from eth_keys.exceptions import ValidationError as KeyValidationError

#: The lowest error correction level used (segno may raise it when that is free).
ERROR_LEVEL = "Q"
#: The blank margin around a code, in modules (ISO/IEC 18004 requires four).
QUIET_ZONE = 4
#: The smallest module printed, in millimetres.
MIN_MODULE_MM = 0.4
#: The default module size, in millimetres.
MODULE_MM = 0.5
#: The largest module this module draws (a code of about 25 cm), in millimetres.
MAX_MODULE_MM = 5.0
#: PNG pixels per module: default and limits.
PNG_SCALE = 10
MAX_PNG_SCALE = 40
#: The longest text encoded (a Digital Link is about 80 characters, a claim link about 110).
MAX_CONTENT = 512
#: The media types of the formats.
MEDIA_TYPES = {"svg": "image/svg+xml", "png": "image/png"}


class QRError(ValueError):
    """Content or a size that this module refuses; the message says why."""


def make(content: str) -> segno.QRCode:
    """The QR code of ``content`` (not a Micro QR: phones' cameras do not all read those)."""
    if not content or len(content) > MAX_CONTENT:
        raise QRError(f"QR content: 1 to {MAX_CONTENT} characters expected, got {len(content)}")
    return segno.make_qr(content, error=ERROR_LEVEL, boost_error=True)


def width_mm(code: segno.QRCode, module_mm: float = MODULE_MM) -> float:
    """The printed width of ``code`` with its quiet zone at ``module_mm`` a module."""
    return float(code.symbol_size(scale=1, border=QUIET_ZONE)[0]) * module_mm


def _module_mm(module_mm: float) -> float:
    if not MIN_MODULE_MM <= module_mm <= MAX_MODULE_MM:
        raise QRError(f"module size: {module_mm} mm is not between {MIN_MODULE_MM} and {MAX_MODULE_MM} mm")
    return module_mm


def svg(content: str, module_mm: float = MODULE_MM) -> bytes:
    """``content`` as an SVG whose ``width`` and ``height`` are in millimetres,
    ``module_mm`` a module, with the four-module quiet zone."""
    code = make(content)
    out = io.BytesIO()
    code.save(out, kind="svg", scale=_module_mm(module_mm), unit="mm", border=QUIET_ZONE, xmldecl=True,
              dark="#000", light="#fff")
    return out.getvalue()


def png(content: str, scale: int = PNG_SCALE) -> bytes:
    """``content`` as a PNG of ``scale`` pixels a module, with the four-module quiet zone."""
    if not 1 <= scale <= MAX_PNG_SCALE:
        raise QRError(f"PNG scale: {scale} pixels a module is not between 1 and {MAX_PNG_SCALE}")
    out = io.BytesIO()
    make(content).save(out, kind="png", scale=scale, border=QUIET_ZONE, dark="#000", light="#fff")
    return out.getvalue()


def render(content: str, fmt: str, module_mm: float = MODULE_MM, scale: int = PNG_SCALE) -> bytes:
    """``content`` in ``fmt`` (``svg`` or ``png``)."""
    if fmt == "svg":
        return svg(content, module_mm)
    if fmt == "png":
        return png(content, scale)
    raise QRError(f"format {fmt!r}: svg or png")


def dark_runs(code: segno.QRCode) -> list[list[tuple[int, int]]]:
    """Per row of ``code`` (top first, no quiet zone), the runs of dark modules as
    (first column, length): what a vector drawing fills."""
    rows: list[list[tuple[int, int]]] = []
    for row in code.matrix:
        runs: list[tuple[int, int]] = []
        start = None
        for x, dark in enumerate(row):
            if dark and start is None:
                start = x
            elif not dark and start is not None:
                runs.append((start, x - start))
                start = None
        if start is not None:
            runs.append((start, len(row) - start))
        rows.append(runs)
    return rows


# -- gift claim links -------------------------------------------------------------------------

#: A claim link under the service's public address: the holder app's claim page of the gifted
#: bottle (web/app/gifts.py), with the secret in the fragment.
CLAIM_LINK = "{base}/app/claim/{token_id}#claim={secret}"


def claim_link(base_url: str, token_id: int, claim_secret: str) -> str:
    """The link a gift's recipient opens: ``<base>/app/claim/<token id>#claim=<claim secret>``.

    Opened in a browser, it shows the holder app's claim page of the gifted bottle,
    whose script copies the secret into its form (sign up or log in, then accept).
    The secret (the claim key's private key, 32 bytes of hex) is in the URI's
    fragment, which a browser never sends to a server: opening the link tells the
    service the token id, never the secret. The recipient's app reads the fragment and
    signs the claim (`POST /relay/gift-claims`) or sends the secret, once, to
    `POST /me/relay/gift-claims`."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise QRError(f"base URL {base_url!r}: an http(s) address without query or fragment expected")
    if not 0 < token_id < 2**256:
        raise QRError(f"token id {token_id} is out of range")
    raw = claim_secret.removeprefix("0x")
    if len(raw) != 64:
        raise QRError("claim secret: 32 bytes of hex expected")
    try:
        keys.PrivateKey(bytes.fromhex(raw))
    except (ValueError, KeyValidationError) as err:
        raise QRError("claim secret: not a valid secp256k1 private key") from err
    return CLAIM_LINK.format(base=base_url.rstrip("/"), token_id=token_id, secret="0x" + raw.lower())
