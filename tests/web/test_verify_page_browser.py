"""The verification page in a real Chromium, for every state a scanned bottle can be in,
at phone and desktop sizes and in English, Simplified Chinese and French.

One lot (version 2, its document deposited, a label image it carries as data) is issued
once for the module and its bottles are taken to every state: unsold, sold (genuine), gift
pending, pledged for a loan, redemption requested, redeemed and flagged; a serial past the
lot's end was never issued and a mangled code is unreadable. The app is served by uvicorn
and read by Chromium like a phone that scanned the code. Screenshots are kept under
``build/screenshots/<state>-<size>-<lang>.png``.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from eth_account import Account
from eth_utils import keccak
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from browser import SIZES, chromium, screenshot, serve, tab  # noqa: E402

from amphora import eip712, gs1, lots  # noqa: E402
from amphora.demo import EXAMPLE_LOT  # noqa: E402
from amphora.merkle import ReserveTree  # noqa: E402
from api.main import create_app  # noqa: E402
from web.render import Page  # noqa: E402
from web.verify import short  # noqa: E402

#: The API fixtures (the deployment, the shared index, the test settings).
pytest_plugins = ["api_fixtures"]

USD = 10**6
DAY = 24 * 3600
LANGUAGES = {"zh-CN": "简体中文", "fr": "Français"}


def _label_png() -> str:
    """A small label (cream paper, a wine-red frame) as a data URI, as a lot document may carry it."""
    image = Image.new("RGB", (180, 240), "#f4ead5")
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, 171, 231), outline="#6d1f2f", width=4)
    draw.rectangle((24, 60, 155, 64), fill="#6d1f2f")
    draw.text((40, 90), "GRAND VIN", fill="#2b2118")
    draw.text((70, 120), "2019", fill="#6d1f2f")
    draw.rectangle((24, 170, 155, 174), fill="#6d1f2f")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@dataclass(frozen=True)
class State:
    """A page to look at: its path, status, English headline and what else must be visible."""

    path: str
    status: int
    headline: str
    visible: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    issued: bool = True


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("documents")


@pytest.fixture(scope="module")
def states(project, manifest, cert, registry, deployed_stablecoin, winery, custodian, holder, admin, minter, lender,
           appraiser, chain, documents) -> dict[str, State]:
    """One lot of eight bottles taken to every state (see the module's docstring)."""
    doc = json.loads(EXAMPLE_LOT.read_text())
    doc.update(bottle_count=8, custodian=custodian.address, lot_code="BR-2019-1", producer="Domaine Test",
               label_image={"uri": _label_png(), "keccak256": "0x" + "ab" * 32, "media_type": "image/png"})
    lot = lots.issue(cert, winery, lots.LotDescription.from_mapping(copy.deepcopy(doc)))
    lots.write_document(documents / f"lot-{lot.lot_id}.json", lot.metadata)
    token = {serial: lots.token_id(lot.lot_id, serial) for serial in range(1, 10)}
    for serial in range(2, 8):
        cert.transferFrom(winery, holder, token[serial], sender=winery)
    registry.attest_storage(lot.lot_id, keccak(text="storage report 2026-11"),
                            "https://cave.example/reports/2026-11.pdf", sender=custodian)
    tree = ReserveTree.build([token[s] for s in range(1, 9)])
    registry.post_reserve_root(tree.root, 8, "ipfs://bafyreserve", sender=custodian)
    # Bottle 3: offered as a gift.
    cert.create_gift(token[3], Account.create().address, chain.pending_timestamp + 14 * DAY, sender=holder)
    # Bottle 4: pledged for a loan of 1,250 stablecoin.
    lending = project.PledgeLending.at(manifest.address("PledgeLending"))
    deployed_stablecoin.configureMinter(minter, 10**9 * USD, sender=admin)
    deployed_stablecoin.mint(lender, 10_000 * USD, sender=minter)
    deployed_stablecoin.approve(lending, 2**256 - 1, sender=lender)
    lending.set_appraiser(appraiser, True, sender=admin)
    lending.post_appraisal(lot.lot_id, 2_500 * USD, chain.blocks.head.timestamp, sender=appraiser)
    message = eip712.loan_offer_message(lender.address, deployed_stablecoin.address, lot.lot_id, token[4],
                                        1_250 * USD, 1_300 * USD, 30 * DAY, 7 * DAY, 0,
                                        chain.pending_timestamp + DAY, 0)
    signature = eip712.sign(eip712.lending_typed_data("LoanOffer", message, chain.chain_id, lending.address),
                            lender.private_key)
    lending.accept_offer(tuple(message.values()), signature, token[4], sender=holder)
    # Bottle 5: release from the cellar requested; bottle 6: released; bottle 7: reported stolen.
    cert.request_redemption(token[5], keccak(text="deliver to 1 rue X"), sender=holder)
    cert.request_redemption(token[6], keccak(text="deliver to 2 rue Y"), sender=holder)
    cert.confirm_redemption(token[6], sender=custodian)
    cert.flag(token[7], b"\x07" * 32, sender=holder)

    serial = gs1.gs1_serial(lot.metadata["serial_salt"], 2)
    symbol = deployed_stablecoin.symbol()
    named = ("Domaine Test", "Cave Test")
    addresses = (short(winery.address), short(custodian.address))
    return {
        "unsold": State(f"/verify/{token[1]}", 200, "Genuine certificate, not yet sold",
                        ("Bottle 1 of 8", "BR-2019-1", "Held by", "(the producer's stock)", *named), addresses),
        "genuine": State(f"/verify/{token[2]}", 200, "Genuine certificate",
                         ("Bottle 2 of 8", serial, "Cabernet Sauvignon", "13.5% vol", short(holder.address),
                          "Ownership changed", "Storage checked by the cellar of Cave Test", "Read the storage report",
                          "The cellar of Cave Test published its inventory: 8 bottles", *named), addresses),
        "gift_pending": State(f"/verify/{token[3]}", 200, "Genuine — gift pending",
                              ("Bottle 3 of 8", "The gift can be accepted until", "Offered as a gift", *named),
                              addresses),
        "pledged": State(f"/verify/{token[4]}", 200, "Genuine — pledged as collateral",
                         ("Bottle 4 of 8", f"It secures a loan of 1,250.00 {symbol}, due on",
                          f"Pledged as collateral for a loan of 1,250.00 {symbol}", *named),
                         (*addresses, "1250000000")),
        "redemption_requested": State(f"/verify/{token[5]}", 200, "Genuine — release from the cellar requested",
                                      ("Bottle 5 of 8", "Holder asked the cellar of Cave Test to release the bottle",
                                       *named), addresses),
        "redeemed": State(f"/verify/{token[6]}", 200, "Already released from the cellar",
                          ("Bottle 6 of 8", "Released to its holder on", "certificate closed", *named), addresses),
        "flagged": State(f"/verify/{token[7]}", 200, "Reported lost or stolen",
                         ("Bottle 7 of 8", "Do not buy this bottle", "Reported lost or stolen on",
                          "Contact the producer", "contact@amphora.example", "1 route des Chais", *named),
                         (*addresses, "Genuine")),
        "never_issued": State(f"/verify/{token[9]}", 404, "No certificate for this code",
                              ("may not be genuine",), ("Bottle", "not_found"), issued=False),
        "unreadable": State("/verify/0x12%20oops", 422, "This code cannot be read",
                            ("Scan the code on the bottle again",),
                            ("blockchain", "verified", "token_id", "invalid_request"), issued=False),
    }


@pytest.fixture(scope="module")
def site(api_settings, documents, states, w3) -> str:
    """The test app served over HTTP, once the index has every state's events."""
    from api_fixtures import wait_indexed

    app = create_app(api_settings.model_copy(update={"documents_dir": documents}))
    with serve(app) as base:
        wait_indexed(w3, SimpleNamespace(app=app))
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def _headline(visit) -> str:
    return visit.page.get_by_role("heading", level=1).inner_text().strip()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("state", ["unsold", "genuine", "gift_pending", "pledged", "redemption_requested",
                                   "redeemed", "flagged", "never_issued", "unreadable"])
def test_scanned_bottle__each_state__reads_right_in_three_languages(browser, site, states, state, size):
    expected = states[state]
    with tab(browser, size) as visit:
        response = visit.page.goto(site + expected.path)
        assert response is not None and response.status == expected.status
        assert _headline(visit) == expected.headline
        text = visit.page.inner_text("main")
        for words in expected.visible:
            assert words in text, words
        for words in expected.hidden:
            assert words not in text, words
        if expected.issued:
            assert visit.page.locator("img.label").is_visible()
            assert visit.page.get_by_text("Check it yourself").is_visible()
        screenshot(visit.page, f"{state}-{size}-en")

        for language, switch in LANGUAGES.items():
            visit.page.get_by_role("navigation").get_by_role("link", name=switch).click()
            visit.page.wait_for_load_state()
            translated = Page(language).gettext(expected.headline)
            assert translated != expected.headline
            assert _headline(visit) == translated
            assert visit.page.locator("html").get_attribute("lang") == language
            screenshot(visit.page, f"{state}-{size}-{language}")
        assert not visit.errors and not visit.failed, (visit.errors, visit.failed)


def test_scanned_bottle__every_state__no_request_leaves_the_site_and_no_console_error(browser, site, states):
    origin = urlsplit(site).netloc
    with tab(browser, "phone") as visit:
        for state in states.values():
            visit.page.goto(site + state.path)
        assert visit.requests, "the browser made no request"
        outside = [url for url in visit.requests if urlsplit(url).scheme != "data" and urlsplit(url).netloc != origin]
        assert not outside, outside
        assert any(url.endswith("/static/verify.css") for url in visit.requests)
        # A CSP violation (an inline style, an external image) shows as a console error.
        assert not visit.errors and not visit.failed, (visit.errors, visit.failed)


def test_scanned_bottle__chinese_reader__page_in_chinese_without_switching(browser, site, states):
    with tab(browser, "phone", locale="zh-CN") as visit:
        visit.page.goto(site + states["pledged"].path)
        assert _headline(visit) == "真品 — 已作抵押"
        text = visit.page.inner_text("main")
        assert "共 8 瓶中的第 4 瓶" in text
        assert "安芙拉酒庄正牌葡萄酒" in text
