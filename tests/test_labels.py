"""Label sheets (amphora.labels): a page rendered to an image (pypdfium2) and its codes
decoded (zxing-cpp) to the exact Digital Links, the text beside them, A4 against letter,
and bad input refused with nothing written."""

from __future__ import annotations

import copy
import io
import json

import pypdfium2 as pdfium
import pytest
import zxingcpp
from click.testing import CliRunner

from amphora import labels, lots
from amphora.demo import EXAMPLE_LOT

BASE = "https://wine.example"
POINTS_PER_MM = 72 / 25.4


def v2_document(bottle_count: int = 60, **changes) -> dict:
    data = {**json.loads(EXAMPLE_LOT.read_text()), "bottle_count": bottle_count, **changes}
    return lots.LotDescription.from_mapping(data).metadata_document()


def v1_document() -> dict:
    data = {k: v for k, v in json.loads(EXAMPLE_LOT.read_text()).items()
            if k in ("producer", "wine", "region", "bottle_count", "volume_ml", "bottling_date", "custodian")}
    return lots.LotDescription.from_mapping(data).metadata_document()


@pytest.fixture(scope="module")
def doc() -> dict:
    return v2_document()


def pdf_of(doc: dict, first: int, last: int, paper: str = "a4") -> pdfium.PdfDocument:
    out = io.BytesIO()
    labels.write_pdf(doc, BASE, first, last, paper, out)
    return pdfium.PdfDocument(out.getvalue())


def decoded(page: pdfium.PdfPage, dpi: int = 200) -> list[str]:
    image = page.render(scale=dpi / 72).to_pil()
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def text_of(page: pdfium.PdfPage) -> str:
    return page.get_textpage().get_text_range()


def test_page__rendered_and_decoded__every_code_is_its_bottles_exact_digital_link(doc):
    pdf = pdf_of(doc, 5, 28)                            # 24 labels: one A4 page
    assert len(pdf) == 1
    expected = {lots.digital_link(doc, n).uri(BASE) for n in range(5, 29)}
    found = decoded(pdf[0])
    assert len(found) == 24 and set(found) == expected


def test_label__shows_ingredients_energy_and_the_identifiers_in_human_readable_form(doc):
    text = text_of(pdf_of(doc, 7, 7)[0])
    serial = lots.digital_link(doc, 7).serial
    for line in ("Ingredients", "E (100 ml) = 322 kJ / 77 kcal", "(01) 09520001000003", "(22) 2019",
                 "(10) GV19-0615", f"(21) {serial}"):
        assert line in text
    assert text.count("Ingredients") == 1


def test_label__non_vintage_lot__no_ai_22_line():
    nv = v2_document(4, vintage=0)
    text = text_of(pdf_of(nv, 1, 1)[0])
    assert "(22)" not in text and "(10) GV19-0615" in text
    assert decoded(pdf_of(nv, 1, 1)[0]) == [lots.digital_link(nv, 1).uri(BASE)]


@pytest.mark.parametrize(("paper", "size_mm", "per_page"), [("a4", (210, 297), 24), ("letter", (215.9, 279.4), 21)])
def test_paper__a4_and_letter__their_page_size_and_labels_per_page(doc, paper, size_mm, per_page):
    assert labels.grid(paper).per_page == per_page
    pdf = pdf_of(doc, 1, per_page + 1, paper)          # one label more than a page holds
    assert len(pdf) == 2
    width, height = pdf[0].get_size()
    assert (width / POINTS_PER_MM, height / POINTS_PER_MM) == (pytest.approx(size_mm[0], abs=0.1),
                                                               pytest.approx(size_mm[1], abs=0.1))
    assert decoded(pdf[1]) == [lots.digital_link(doc, per_page + 1).uri(BASE)]


def test_grid__labels_fit_inside_the_page_margins():
    for paper in labels.PAPERS:
        layout = labels.grid(paper)
        x, y = layout.origin(layout.per_page - 1)       # the bottom-right label
        assert x + labels.LABEL_W_MM * 72 / 25.4 <= layout.page[0] - labels.MARGIN_MM * 72 / 25.4 + 0.01
        assert y >= labels.MARGIN_MM * 72 / 25.4 - 0.01


def test_write_pdf__progress__counts_every_label(doc):
    counted: list[int] = []
    labels.write_pdf(doc, BASE, 1, 50, "a4", io.BytesIO(), counted.append)
    assert counted == [24, 24, 2]


@pytest.mark.parametrize(("first", "last", "message"), [
    (0, 3, "start at 1"), (5, 4, "before first"), (1, 61, "has 60 bottles"), (61, 61, "first: the lot has 60"),
])
def test_range__outside_the_lot_or_inverted__refused(doc, first, last, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.check_range(doc, first, last)


def test_range__over_the_cap__refused(doc):
    labels.check_range(doc, 1, 10, cap=10)
    with pytest.raises(labels.LabelError, match="at most 10 per request"):
        labels.check_range(doc, 1, 11, cap=10)


def test_document__version_1__refused_as_having_no_gtin():
    with pytest.raises(labels.LabelError, match="version 1.*no GTIN"):
        labels.check_document(v1_document())


def test_document__v2_with_a_wrong_gtin_check_digit__refused():
    bad = copy.deepcopy(v2_document(4))
    bad["gtin"] = "09520001000004"
    with pytest.raises(labels.LabelError, match="gtin"):
        labels.check_document(bad)


def test_paper__unknown__refused(doc):
    with pytest.raises(labels.LabelError, match="paper"):
        labels.write_pdf(doc, BASE, 1, 1, "a3", io.BytesIO())


def test_write_file__refused_input__writes_nothing_and_keeps_an_old_file(doc, tmp_path):
    output = tmp_path / "labels.pdf"
    with pytest.raises(labels.LabelError):
        labels.write_file(doc, BASE, 3, 2, "a4", output)
    assert list(tmp_path.iterdir()) == []
    output.write_bytes(b"old")
    with pytest.raises(labels.LabelError):
        labels.write_file(v1_document(), BASE, 1, 2, "a4", output)
    assert output.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["labels.pdf"]


def _document_file(tmp_path, doc) -> str:
    path = tmp_path / "lot-1.json"
    lots.write_document(path, doc)
    return str(path)


def test_command__a_range__writes_the_pdf_and_says_so(doc, tmp_path):
    output = tmp_path / "out.pdf"
    result = CliRunner().invoke(labels.main, ["--lot-document", _document_file(tmp_path, doc), "--first", "2",
                                              "--last", "23", "--paper", "letter", "--base-url", BASE,
                                              "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "22 labels on 2 letter pages" in result.output
    pdf = pdfium.PdfDocument(output.read_bytes())
    assert len(pdf) == 2 and set(decoded(pdf[1])) == {lots.digital_link(doc, 23).uri(BASE)}


@pytest.mark.parametrize(("args", "message"), [
    (["--first", "3", "--last", "2"], "before first"),
    (["--last", "61"], "has 60 bottles"),
])
def test_command__bad_range__clear_error_and_no_file(doc, tmp_path, args, message):
    output = tmp_path / "out.pdf"
    result = CliRunner().invoke(labels.main, ["--lot-document", _document_file(tmp_path, doc), "-o", str(output),
                                              *args])
    assert result.exit_code == 1 and message in result.output
    assert not output.exists() and not (tmp_path / "out.pdf.part").exists()


def test_command__version_1_document__clear_error_and_no_file(tmp_path):
    output = tmp_path / "out.pdf"
    result = CliRunner().invoke(labels.main, ["--lot-document", _document_file(tmp_path, v1_document()),
                                              "-o", str(output)])
    assert result.exit_code == 1 and "no GTIN" in result.output and not output.exists()


def test_command__missing_or_broken_document__clear_error(tmp_path):
    (tmp_path / "broken.json").write_text("{")
    for name, message in (("missing.json", "cannot be read"), ("broken.json", "not valid JSON")):
        result = CliRunner().invoke(labels.main, ["--lot-document", str(tmp_path / name), "-o",
                                                  str(tmp_path / "out.pdf")])
        assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "out.pdf").exists()


def test_command__base_url_from_the_environment__as_the_api_reads_it(doc, tmp_path):
    output = tmp_path / "out.pdf"
    result = CliRunner().invoke(labels.main, ["--lot-document", _document_file(tmp_path, doc), "--last", "1",
                                              "-o", str(output)], env={"AMPHORA_PUBLIC_BASE_URL": BASE})
    assert result.exit_code == 0, result.output
    assert decoded(pdfium.PdfDocument(output.read_bytes())[0]) == [lots.digital_link(doc, 1).uri(BASE)]
