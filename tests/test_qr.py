"""QR codes (amphora.qr): decoded by a real decoder (zxing-cpp) back to the exact URI,
and the printed geometry (module size, quiet zone) read back from the SVG."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from amphora import gs1, qr

CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
EXAMPLE = "https://wine.example/01/09520001000003/22/2019/10/GV19-0615/21/I5RDINA"

gtins = st.from_regex(r"\A[0-9]{13}\Z").map(lambda p: p + str(gs1.check_digit(p)))
codes = st.text(alphabet=CSET82, min_size=1, max_size=20)
hosts = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\.(example|test|wine)\Z")
bottle_links = st.builds(gs1.DigitalLink, gtin=gtins, lot=codes, serial=codes,
                         vintage=st.none() | st.integers(1900, 2099).map(str))
secrets32 = st.integers(1, SECP256K1_N - 1).map(lambda k: "0x" + k.to_bytes(32, "big").hex())


def decode_png(data: bytes) -> list[str]:
    """The texts of the QR codes a real decoder finds in a PNG."""
    image = Image.open(io.BytesIO(data))
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def svg_geometry(data: bytes) -> tuple[float, float, int, set[tuple[int, int]]]:
    """From segno's SVG: (width in mm, module size in mm, side in modules with the quiet
    zone, the dark modules (column, row) counted from the SVG's corner)."""
    root = ET.fromstring(data)
    width, height = root.get("width"), root.get("height")
    assert width == height and width is not None and width.endswith("mm")
    side = float(root.get("viewBox", "").split()[2])
    group = root.find("{http://www.w3.org/2000/svg}g")
    assert group is not None
    module = float(re.fullmatch(r"scale\(([\d.]+)\)", group.get("transform", "")).group(1))
    line = next(p for p in group.iter("{http://www.w3.org/2000/svg}path") if p.get("class") == "qrline")
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", line.get("d", "")):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:  # a horizontal stroke of `a` modules along row y - 0.5
            dark |= {(int(x) + i, int(y - 0.5)) for i in range(int(float(a)))}
            x += float(a)
    return float(width[:-2]), module, round(side / module), dark


@given(bottle_links, hosts)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_png__any_valid_bottle_digital_link__decodes_to_the_exact_uri(link, host):
    uri = link.uri(f"https://{host}")
    assert decode_png(qr.png(uri, scale=4)) == [uri]


@given(bottle_links)
@settings(max_examples=40, deadline=None)
def test_svg__any_valid_bottle_digital_link__dark_modules_are_the_code_inside_a_four_module_quiet_zone(link):
    uri = link.uri("https://wine.example")
    code = qr.make(uri)
    width, module, side, dark = svg_geometry(qr.svg(uri))
    n = len(code.matrix)
    assert side == n + 2 * qr.QUIET_ZONE
    assert dark == {(x + 4, y + 4) for y, row in enumerate(code.matrix) for x, on in enumerate(row) if on}
    assert min(x for x, _ in dark) == min(y for _, y in dark) == 4           # the finder patterns touch the zone
    assert max(x for x, _ in dark) == max(y for _, y in dark) == n + 3
    assert module == qr.MODULE_MM >= qr.MIN_MODULE_MM
    assert width == pytest.approx(side * module)


def test_svg__module_size__sets_the_printed_millimetres():
    width, module, side, _ = svg_geometry(qr.svg(EXAMPLE, module_mm=0.4))
    assert module == 0.4 and width == pytest.approx(side * 0.4)
    assert qr.width_mm(qr.make(EXAMPLE), 0.4) == pytest.approx(width)


@pytest.mark.parametrize("module_mm", [0.39, 0.0, -1.0, 5.01])
def test_svg__module_below_0_4_mm_or_huge__refused(module_mm):
    with pytest.raises(qr.QRError, match="module size"):
        qr.svg(EXAMPLE, module_mm=module_mm)


@pytest.mark.parametrize("scale", [0, -3, qr.MAX_PNG_SCALE + 1])
def test_png__scale_out_of_range__refused(scale):
    with pytest.raises(qr.QRError, match="PNG scale"):
        qr.png(EXAMPLE, scale=scale)


def test_code__a_bottle_link__level_q_or_better_plain_qr_not_micro():
    code = qr.make(EXAMPLE)
    assert code.error in ("Q", "H") and not code.is_micro
    # About 75 characters: version 6 (41 modules), 24.5 mm with the quiet zone at 0.5 mm a module.
    assert code.version == 6 and qr.width_mm(code) == pytest.approx(24.5)


@pytest.mark.parametrize("content", ["", "x" * (qr.MAX_CONTENT + 1)])
def test_code__empty_or_too_long__refused(content):
    with pytest.raises(qr.QRError, match="QR content"):
        qr.make(content)


def test_render__unknown_format__refused():
    with pytest.raises(qr.QRError, match="svg or png"):
        qr.render(EXAMPLE, "gif")


def test_dark_runs__rebuild_the_matrix():
    code = qr.make(EXAMPLE)
    rebuilt = [[False] * len(code.matrix) for _ in code.matrix]
    for y, runs in enumerate(qr.dark_runs(code)):
        for start, length in runs:
            for x in range(start, start + length):
                rebuilt[y][x] = True
    assert rebuilt == [[bool(v) for v in row] for row in code.matrix]


@given(st.integers(1, 2**256 - 1), secrets32)
@settings(max_examples=25, deadline=None)
def test_claim_link__secret_in_the_fragment__decodes_exactly(token_id, secret):
    link = qr.claim_link("https://wine.example/", token_id, secret)
    assert link == f"https://wine.example/app/claim/{token_id}#claim={secret}"
    before_fragment = link.split("#")[0]
    assert secret[2:] not in before_fragment            # never in what a browser sends to a server
    assert decode_png(qr.png(link, scale=4)) == [link]


@pytest.mark.parametrize("secret", [
    "0x" + "00" * 32,                                    # zero is no key
    "0x" + SECP256K1_N.to_bytes(32, "big").hex(),        # the group order is no key
    "0x" + "ff" * 32,
    "0x" + "11" * 31,                                    # short
    "0x" + "zz" * 32,                                    # not hex
])
def test_claim_link__not_a_private_key__refused_without_echoing_it(secret):
    with pytest.raises(qr.QRError, match="claim secret") as err:
        qr.claim_link("https://wine.example", 1, secret)
    assert secret[2:] not in str(err.value)


@pytest.mark.parametrize(("base", "token_id"), [
    ("ftp://wine.example", 1), ("https://wine.example?x=1", 1), ("https://wine.example#f", 1), ("wine.example", 1),
    ("https://wine.example", 0), ("https://wine.example", 2**256),
])
def test_claim_link__bad_base_or_token__refused(base, token_id):
    with pytest.raises(qr.QRError):
        qr.claim_link(base, token_id, "0x" + "11" * 32)
