"""The pages people use: server-rendered HTML in English, Simplified Chinese and French.

* :mod:`web.i18n`: the supported languages, choosing one per request, and the gettext
  catalogs (``web/locales/<locale>/LC_MESSAGES/*.po``, one file per page family, read
  and merged at start-up; no compiled ``.mo`` files are kept in the repository).
* :mod:`web.render`: the Jinja2 environment (autoescaped, with the i18n extension) and
  the helpers every template gets: ``_``/``gettext``/``ngettext``, dates and numbers in
  the reader's format, and the language switch.
* ``web/templates/``: ``base.html`` and one template per page; ``web/static/``: the one
  stylesheet and any image, served at ``/static/`` (no CDN, no external asset).

The routes of the pages are registered by the HTTP app (:mod:`api.main`).
"""

from pathlib import Path

#: The pages' stylesheet and images, served at ``/static/``.
STATIC_DIR = Path(__file__).parent / "static"
