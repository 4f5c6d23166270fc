"""Printable label sheets: one label per bottle of a lot, as a PDF (A4 or US letter).

Each label carries the bottle's GS1 Digital Link QR code (:mod:`amphora.qr`) and,
beside it, the heading "Ingredients" (Commission notice C/2023/1190: the code that
opens the e-label is introduced by a word saying what it gives, not by a generic
"more information"), the energy value per 100 ml (which the regulation requires on
the label itself even when the full declaration is online), and the identifiers in
human-readable form: ``(01)`` GTIN, ``(22)`` vintage, ``(10)`` lot and ``(21)``
serial.

Labels are laid out in a grid of :data:`LABEL_W_MM` x :data:`LABEL_H_MM` cells,
three across and eight (A4) or seven (letter) down. The code is drawn as vector
paths (one filled path of row runs per code), so it prints sharp at any resolution.

Command line (reads a lot document version 2, writes the PDF; nothing is written when
the input is refused)::

    python -m amphora.labels --lot-document lot-1.json --first 1 --last 10000 \\
        --paper a4 --base-url https://wine.example -o labels.pdf
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import segno
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from amphora import gs1, lots, qr

PAPERS: dict[str, tuple[float, float]] = {"a4": A4, "letter": LETTER}
LABEL_W_MM = 62.0
LABEL_H_MM = 32.0
MARGIN_MM = 8.0
GAP_MM = 3.0
#: The code's module size on the label, and the room the code takes (quiet zone included).
MODULE_MM = qr.MODULE_MM
HEADING = "Ingredients"
FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"


class LabelError(ValueError):
    """A lot document, range or paper that cannot make labels; the message says why."""


@dataclass(frozen=True)
class Label:
    """What one bottle's label shows."""

    number: int
    uri: str
    gtin: str
    lot: str
    serial: str
    vintage: str | None


def energy_line(doc: dict[str, Any]) -> str:
    """The energy value per 100 ml, e.g. ``E (100 ml) = 322 kJ / 77 kcal``."""
    nutrition = doc["nutrition_per_100ml"]
    return f"E (100 ml) = {nutrition['energy_kj']} kJ / {nutrition['energy_kcal']} kcal"


def check_document(doc: Any) -> dict[str, Any]:
    """``doc`` if it is a valid lot document version 2; else :class:`LabelError`
    (a version 1 document has no GTIN, so its bottles have no Digital Link)."""
    if not isinstance(doc, dict):
        raise LabelError("lot document: a JSON object expected")
    if not lots.is_v2(doc):
        raise LabelError("lot document: version 1 (no document_version 2), so it has no GTIN and its bottles "
                         "no GS1 Digital Link; issue the lot with a version 2 document to print labels")
    try:
        lots.validate_document(doc)
    except lots.LotFileError as err:
        raise LabelError(f"lot document: {err}") from err
    return doc


def check_range(doc: dict[str, Any], first: int, last: int, cap: int | None = None) -> None:
    """Refuse a range of bottle numbers that is empty, outside the lot, or longer than ``cap``."""
    count = int(doc["bottle_count"])
    if first < 1:
        raise LabelError(f"first: bottle numbers start at 1, got {first}")
    if first > count:
        raise LabelError(f"first: the lot has {count} bottles, so {first} is not one of them")
    if last < first:
        raise LabelError(f"last: {last} is before first ({first})")
    if last > count:
        raise LabelError(f"last: the lot has {count} bottles, so {last} is not one of them")
    if cap is not None and last - first + 1 > cap:
        raise LabelError(f"range: {last - first + 1} labels asked, at most {cap} per request")


def labels_of(doc: dict[str, Any], base_url: str, first: int, last: int) -> Iterator[Label]:
    """The labels of bottles ``first``..``last`` (numbers in the lot) of a checked document."""
    for number in range(first, last + 1):
        link = lots.digital_link(doc, number)
        assert link.serial is not None and link.lot is not None
        yield Label(number=number, uri=link.uri(base_url), gtin=link.gtin, lot=link.lot, serial=link.serial,
                    vintage=link.vintage)


@dataclass(frozen=True)
class Grid:
    """Where labels go on a page (points, origin bottom left)."""

    page: tuple[float, float]
    columns: int
    rows: int

    @property
    def per_page(self) -> int:
        return self.columns * self.rows

    def origin(self, index: int) -> tuple[float, float]:
        """Bottom-left corner of the ``index``-th label of a page (row by row from the top)."""
        row, column = divmod(index, self.columns)
        x = MARGIN_MM * mm + column * (LABEL_W_MM + GAP_MM) * mm
        y = self.page[1] - MARGIN_MM * mm - (row + 1) * LABEL_H_MM * mm - row * GAP_MM * mm
        return x, y


def grid(paper: str) -> Grid:
    """The label grid of ``paper`` (``a4`` or ``letter``)."""
    if paper not in PAPERS:
        raise LabelError(f"paper {paper!r}: one of {', '.join(PAPERS)}")
    width, height = PAPERS[paper]
    columns = int((width / mm - 2 * MARGIN_MM + GAP_MM) // (LABEL_W_MM + GAP_MM))
    rows = int((height / mm - 2 * MARGIN_MM + GAP_MM) // (LABEL_H_MM + GAP_MM))
    return Grid(page=(width, height), columns=columns, rows=rows)


def _draw_code(canvas: Canvas, code: segno.QRCode, x: float, y: float) -> float:
    """Draw ``code`` with its quiet zone's bottom-left corner at (x, y); its width
    with the quiet zone (points). The dark modules are one filled path of row runs
    in module units (whole numbers, so the PDF operators are written directly: a
    tenth of the time reportlab's path object takes to format them)."""
    module = MODULE_MM * mm
    size = len(code.matrix)
    canvas.saveState()
    # Module units from the code's top-left corner, y down.
    canvas.transform(module, 0, 0, -module, x + qr.QUIET_ZONE * module, y + (qr.QUIET_ZONE + size) * module)
    canvas.setFillColorRGB(0, 0, 0)
    ops = [f"{start} {row} {length} 1 re" for row, runs in enumerate(qr.dark_runs(code)) for start, length in runs]
    canvas.addLiteral("\n".join(ops) + "\nf")
    canvas.restoreState()
    return (size + 2 * qr.QUIET_ZONE) * module


def _fit(text: str, font: str, size: float, width: float) -> float:
    """The font size (at most ``size``) at which ``text`` fits ``width``."""
    return min(size, size * width / max(stringWidth(text, font, size), 0.01))


def draw_label(canvas: Canvas, label: Label, energy: str, x: float, y: float, heading: str = HEADING) -> None:
    """One label with its bottom-left corner at (x, y)."""
    code = qr.make(label.uri)
    code_width = _draw_code(canvas, code, x, y + (LABEL_H_MM - qr.width_mm(code, MODULE_MM)) * mm / 2)
    left = x + code_width
    width = x + LABEL_W_MM * mm - left - 1.5 * mm
    top = y + LABEL_H_MM * mm - 4.5 * mm
    canvas.setFont(FONT_BOLD, _fit(heading, FONT_BOLD, 10, width))
    canvas.drawString(left, top, heading)
    size = _fit(energy, FONT, 6.5, width)
    canvas.setFont(FONT, size)
    canvas.drawString(left, top - 4.2 * mm, energy)
    lines = [f"(01) {label.gtin}"]
    if label.vintage:
        lines.append(f"(22) {label.vintage}")
    lines += [f"(10) {label.lot}", f"(21) {label.serial}"]
    line_y = top - 9.5 * mm
    for line in lines:
        canvas.setFont(FONT, _fit(line, FONT, 7, width))
        canvas.drawString(left, line_y, line)
        line_y -= 3.3 * mm


def write_pdf(doc: dict[str, Any], base_url: str, first: int, last: int, paper: str, out: IO[bytes],
              progress: Callable[[int], None] | None = None, heading: str = HEADING) -> int:
    """Write the label sheet of bottles ``first``..``last`` of the lot of ``doc`` to
    ``out``; the number of pages. ``progress`` is called with each page's label count."""
    check_document(doc)
    check_range(doc, first, last)
    layout = grid(paper)
    energy = energy_line(doc)
    canvas = Canvas(out, pagesize=layout.page, pageCompression=1)
    canvas.setTitle(f"Labels of lot {doc['lot_code']}, bottles {first} to {last}")
    canvas.setAuthor(str(doc["producer"]))
    canvas.setCreator("Amphora (amphora.labels)")
    pages = 0
    on_page = 0
    for label in labels_of(doc, base_url, first, last):
        if on_page == layout.per_page:
            canvas.showPage()
            pages += 1
            if progress:
                progress(on_page)
            on_page = 0
        draw_label(canvas, label, energy, *layout.origin(on_page), heading=heading)
        on_page += 1
    canvas.showPage()
    if progress:
        progress(on_page)
    canvas.save()
    return pages + 1


def load_document(path: Path) -> dict[str, Any]:
    """A lot document from a JSON file, checked (:func:`check_document`)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as err:
        raise LabelError(f"{path}: cannot be read ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise LabelError(f"{path}: not valid JSON: {err}") from err
    return check_document(doc)


def write_file(doc: dict[str, Any], base_url: str, first: int, last: int, paper: str, output: Path,
               progress: Callable[[int], None] | None = None) -> int:
    """:func:`write_pdf` into ``output``, by way of a temporary file beside it, so
    that a refused input or a failure leaves no file (and an old ``output`` intact)."""
    check_document(doc)
    check_range(doc, first, last)
    grid(paper)
    output = Path(output)
    partial = output.with_name(output.name + ".part")
    try:
        with open(partial, "wb") as fh:
            pages = write_pdf(doc, base_url, first, last, paper, fh, progress)
        os.replace(partial, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return pages


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--lot-document", "document", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The lot's document version 2 (JSON), as deposited for the API.")
@click.option("--first", type=int, default=1, show_default=True, help="First bottle number of the range.")
@click.option("--last", type=int, default=None, help="Last bottle number (default: the lot's last bottle).")
@click.option("--paper", type=click.Choice(sorted(PAPERS)), default="a4", show_default=True)
@click.option("--base-url", envvar="AMPHORA_PUBLIC_BASE_URL", default="http://127.0.0.1:8000", show_default=True,
              help="The resolver's public address the Digital Links start with (default: AMPHORA_PUBLIC_BASE_URL).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PDF to write.")
def main(document: Path, first: int, last: int | None, paper: str, base_url: str, output: Path) -> None:
    """Write a printable label sheet (PDF) for bottles FIRST..LAST of a lot."""
    from tqdm import tqdm

    try:
        doc = load_document(document)
        last = int(doc["bottle_count"]) if last is None else last
        check_range(doc, first, last)
        with tqdm(total=last - first + 1, unit="label", file=sys.stderr, disable=None) as bar:
            pages = write_file(doc, base_url, first, last, paper, output, bar.update)
    except (LabelError, gs1.GS1Error) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{output}: {last - first + 1} labels on {pages} {paper} pages", err=True)


if __name__ == "__main__":
    main()
