"""GET /verify/{token_id}: the page a bottle's QR code opens (the HTML; tests/web drive it in Chromium)."""

from __future__ import annotations

import base64
import json
import re
from html import escape

import pytest
from eth_utils import keccak

from amphora import gs1, lots
from amphora.demo import EXAMPLE_LOT
from amphora.merkle import ReserveTree
from web.verify import short

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

V2 = json.loads(EXAMPLE_LOT.read_text())
COPY_NOTICE = "A code can be copied."
#: A 1x1 PNG, as a lot document may carry its label image.
PIXEL = "data:image/png;base64," + base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8ff"
    "ff3f0005fe02fea7d6a4360000000049454e44ae426082")).decode()


@pytest.fixture
def documents_client(make_client, tmp_path):
    return make_client(auth=False, documents_dir=tmp_path)


def _links(page: str) -> list[str]:
    return re.findall(r'\b(?:src|href)="([^"]*)"', page)


def test_verify_page__unsold__names_the_wine_the_bottle_and_the_producer_not_addresses(client, lot, winery):
    response = client.get(f"/verify/{lot.token(3)}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-language"] == "en"
    page = response.text
    assert "Genuine certificate, not yet sold" in page
    for text in ("Cuvée Essai", "Domaine Test", "2019", "Pauillac AOC", "Bottle 3 of 10", "750 ml", "June 1, 2024",
                 "Cave Test", "the producer&#39;s stock", f"Certificate number {lot.token(3)}"):
        assert text in page, text
    assert short(winery.address) not in page and winery.address not in page


def test_verify_page__issued__warns_that_a_qr_code_can_be_copied(client, lot):
    page = client.get(f"/verify/{lot.token(1)}").text

    assert COPY_NOTICE in page


def test_verify_page__self_contained__no_script_no_inline_style_only_same_origin_links(client, lot):
    page = client.get(f"/verify/{lot.token(1)}").text

    assert "<script" not in page and "<style" not in page and " style=" not in page
    links = _links(page)
    assert "/static/amphora.css" in links and "/static/verify.css" in links
    assert all(link.startswith(("/", "?", "#")) for link in links), links


def test_verify_page__html_in_strings__escaped(client, create_lot):
    lot = create_lot(3, producer="<b>x</b>", wine="<script>alert(1)</script>", region='Côte "&" <i>')

    page = client.get(f"/verify/{lot.token(2)}").text

    assert "<script>alert(1)</script>" not in page
    assert "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "Côte &#34;&amp;&#34; &lt;i&gt;" in page


def test_verify_page__sold_to_a_person__shortened_holder_and_ownership_change_in_the_story(client, held_token,
                                                                                           holder, w3):
    from api_fixtures import wait_indexed

    wait_indexed(w3, client)
    page = client.get(f"/verify/{held_token}").text

    assert "Genuine certificate</h1>" in page
    assert short(holder.address) in page
    assert "Bottle 2 of 10" in page
    assert f"Ownership changed: now held by {short(holder.address)}" in page
    assert "Certified by Domaine Test; kept in the cellar of Cave Test" in page


def test_verify_page__flagged__warns_not_to_buy_with_the_date(client, cert, held_token, holder, w3):
    from api_fixtures import wait_indexed

    cert.flag(held_token, b"\x02" * 32, sender=holder)
    wait_indexed(w3, client)

    page = client.get(f"/verify/{held_token}").text

    assert "Reported lost or stolen" in page
    assert "Do not buy this bottle" in page
    assert "Reported lost or stolen on " in page
    assert "The report was made by the bottle&#39;s holder." in page
    assert "Genuine certificate" not in page


def test_verify_page__v2_lot__lot_code_serial_grapes_alcohol_and_external_label_linked_not_loaded(
        documents_client, issue_v2):
    lot = issue_v2(5, lot_code="VP/1")
    token = lots.token_id(lot.lot_id, 4)

    page = documents_client.get(f"/verify/{token}").text

    serial = gs1.gs1_serial(lot.metadata["serial_salt"], 4)
    for text in ("Grand Vin de Domaine Amphora", "VP/1", serial, "Cabernet Sauvignon, Merlot, Petit Verdot",
                 "13.5% vol", "Bottle 4 of 5"):
        assert text in page, text
    assert "<img" not in page
    assert 'href="https://amphora.example/labels/grand-vin-2019.png"' in page


def test_verify_page__v2_lot_in_chinese__the_documents_translated_name_and_chinese_words(documents_client,
                                                                                       issue_v2):
    lot = issue_v2(3)

    response = documents_client.get(f"/verify/{lots.token_id(lot.lot_id, 2)}",
                                    headers={"Accept-Language": "zh-CN,zh;q=0.9"})

    assert response.headers["content-language"] == "zh-CN"
    assert "安芙拉酒庄正牌葡萄酒" in response.text
    assert "真品证书，尚未售出" in response.text  # the headline of unsold stock
    assert '<html lang="zh-CN">' in response.text


def test_verify_page__label_image_as_data__embedded(documents_client, issue_v2):
    lot = issue_v2(2, label_image={"uri": PIXEL, "keccak256": "0x" + "ab" * 32, "media_type": "image/png"})

    page = documents_client.get(f"/verify/{lots.token_id(lot.lot_id, 1)}").text

    assert f'<img class="label" src="{PIXEL}"' in page


def test_verify_page__label_image_with_a_script_uri__neither_loaded_nor_linked(documents_client, issue_v2):
    lot = issue_v2(2, label_image={"uri": "javascript:alert(1)", "keccak256": "0x" + "ab" * 32})

    page = documents_client.get(f"/verify/{lots.token_id(lot.lot_id, 1)}").text

    assert "javascript:" not in page and "<img" not in page


def test_verify_page__document_edited_after_issuance__not_believed(documents_client, issue_v2, tmp_path):
    lot = issue_v2(2, lot_code="REAL-1")
    path = tmp_path / f"lot-{lot.lot_id}.json"
    path.write_bytes(path.read_bytes().replace(b"REAL-1", b"FAKE-1"))

    page = documents_client.get(f"/verify/{lots.token_id(lot.lot_id, 1)}").text

    assert "FAKE-1" not in page and "REAL-1" not in page
    assert "Bottle 1 of 2" in page


def test_verify_page__storage_report_and_inventory__linked_with_their_fingerprints(client, registry, lot, custodian,
                                                                                   w3):
    from api_fixtures import wait_indexed

    report = keccak(text="cellar report")
    registry.attest_storage(lot.lot_id, report, "https://cave.example/report.pdf", sender=custodian)
    tree = ReserveTree.build([lot.token(s) for s in range(1, 11)])
    registry.post_reserve_root(tree.root, 10, "ipfs://holdings", sender=custodian)
    wait_indexed(w3, client)

    page = client.get(f"/verify/{lot.token(5)}").text

    assert 'href="https://cave.example/report.pdf"' in page and 'href="ipfs://holdings"' in page
    assert "0x" + report.hex() in page and "0x" + tree.root.hex() in page
    assert "Storage checked by the cellar of Cave Test" in page
    assert "The cellar of Cave Test published its inventory: 10 bottles" in page
    assert "the list of the 10 bottles it holds" in page


def test_verify_page__storage_report_uri_with_a_script__not_linked(client, registry, lot, custodian, w3):
    from api_fixtures import wait_indexed

    registry.attest_storage(lot.lot_id, keccak(text="r"), "javascript:alert(1)", sender=custodian)
    wait_indexed(w3, client)

    page = client.get(f"/verify/{lot.token(5)}").text

    assert "javascript:" not in page
    assert "Storage checked by the cellar of Cave Test" in page


def test_verify_page__the_check__names_its_block(client, lot, w3):
    page = client.get(f"/verify/{lot.token(1)}").text

    block = re.search(r"Read from the blockchain at block ([\d,]+), sealed", page)
    assert block is not None
    assert 0 < int(block.group(1).replace(",", "")) <= w3.eth.block_number


def test_verify_page__language_switch__french_headline_and_links_to_the_other_languages(client, lot):
    page = client.get(f"/verify/{lot.token(1)}", params={"lang": "fr"}).text

    assert "Certificat authentique" in page
    assert "Bouteille 1 sur 10" in page
    assert f'href="/verify/{lot.token(1)}?lang=en"' in page and "lang=zh-CN" in page


def test_verify_page__never_issued__404_page_warns_without_codes(client, lot):
    response = client.get(f"/verify/{lot.token(11)}")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No certificate for this code" in response.text
    assert "may not be genuine" in response.text
    assert "not_found" not in response.text and "never issued (it would be" not in response.text


@pytest.mark.parametrize("raw", ["abc", "-5", str(2**256)])
def test_verify_page__unreadable_code__422_page_claims_no_check(client, raw):
    response = client.get(f"/verify/{raw}")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "This code cannot be read" in response.text
    for word in ("blockchain", "verified", "token_id", "invalid_request", "422"):
        assert word not in response.text, word


def test_verify_page__unreadable_code_in_french__translated(client):
    response = client.get("/verify/abc", headers={"Accept-Language": "fr-FR"})

    assert response.status_code == 422
    assert "Ce code est illisible" in response.text


def test_verify_page__node_unreachable__503_page_says_nothing_about_bottle(make_client, lot):
    response = make_client(rpc_url="http://127.0.0.1:9", rpc_timeout=2).get(f"/verify/{lot.token(1)}")

    assert response.status_code == 503
    assert "Checking is unavailable right now" in response.text
    assert "This says nothing about the bottle" in response.text
    assert "may not be genuine" not in response.text
    assert "upstream_unavailable" not in response.text


def test_html_error_page__other_path__generic_words(client):
    # /verify/ without an id is no route: a JSON 404, like every unknown path.
    response = client.get("/verify/")

    assert response.status_code == 404
    assert "No certificate for this code" not in response.text


def test_verify_page__escape_of_a_name_in_the_story(client, create_lot, w3):
    from api_fixtures import wait_indexed

    lot = create_lot(2, producer="<i>Maison</i>")
    wait_indexed(w3, client)

    page = client.get(f"/verify/{lot.token(1)}").text

    assert escape("Bottled by <i>Maison</i>") in page


def test_verify_page__flagged_v2_lot__the_producers_contact_from_the_document(documents_client, issue_v2, cert,
                                                                               winery, holder):
    lot = issue_v2(2, producer_contact={"name": "Domaine Amphora", "address": "1 route des Chais, Pauillac",
                                        "email": "contact@amphora.example"})
    token = lots.token_id(lot.lot_id, 1)
    cert.transferFrom(winery, holder, token, sender=winery)
    cert.flag(token, b"\x05" * 32, sender=holder)

    page = documents_client.get(f"/verify/{token}").text

    assert "Contact the producer" in page
    assert "1 route des Chais, Pauillac" in page
    assert 'href="mailto:contact@amphora.example"' in page


def test_verify_page__gift_pending__says_until_when_it_can_be_accepted(client, cert, held_token, holder, chain):
    expiry = chain.pending_timestamp + 10 * 24 * 3600
    cert.create_gift(held_token, holder.address, expiry, sender=holder)

    page = client.get(f"/verify/{held_token}").text

    assert "Genuine — gift pending" in page
    assert "The gift can be accepted until " in page


def test_verify_page__gift_expiring_past_the_year_9999__the_page_still_answers(client, cert, held_token, holder,
                                                                              w3):
    from api_fixtures import wait_indexed

    # The contract takes any future expiry; Python's dates end with the year 9999.
    cert.create_gift(held_token, holder.address, 2**40, sender=holder)
    wait_indexed(w3, client)

    response = client.get(f"/verify/{held_token}")

    assert response.status_code == 200
    assert "The gift can be accepted until a date far in the future." in response.text
    assert "to be accepted by a date far in the future" in response.text


def test_verify_page__bottle_passed_through_many_hands__reads_a_bounded_number_of_names(
        make_client, cert, lot, winery, custodian, accounts, rpc_url, w3):
    from api_fixtures import node_gateway, wait_indexed

    from api.routers.certificates import NAME_READS_PER_VIEW

    token = lot.token(4)
    strangers = [accounts[n] for n in range(20) if accounts[n].address not in (winery.address, custodian.address)]
    assert len(strangers) > NAME_READS_PER_VIEW
    hands = [winery, *strangers]
    for giver, taker in zip(hands, hands[1:], strict=False):
        cert.transferFrom(giver, taker, token, sender=giver)
    selector = "0x" + keccak(text="party_name(address)")[:4].hex()
    with node_gateway(rpc_url) as (url, seen):
        client = make_client(auth=False, rpc_url=url)
        wait_indexed(w3, client)
        seen.clear()
        response = client.get(f"/verify/{token}")
        name_reads = sum(body.count(selector.encode()) for body in seen)

    assert response.status_code == 200
    assert short(hands[-1].address) in response.text
    assert 0 < name_reads <= NAME_READS_PER_VIEW


def test_verify_page__label_image_on_this_site__embedded_by_path(documents_client, issue_v2, public_base_url):
    lot = issue_v2(2, label_image={"uri": f"{public_base_url}/static/labels/grand-vin.png",
                                   "keccak256": "0x" + "ab" * 32})

    page = documents_client.get(f"/verify/{lots.token_id(lot.lot_id, 1)}").text

    assert '<img class="label" src="/static/labels/grand-vin.png"' in page  # loads from whichever origin serves it
    assert public_base_url not in page
