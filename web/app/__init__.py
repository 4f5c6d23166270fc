"""The holder's web app: sign up, log in, the cellar and each bottle's page.

* :mod:`web.app.session`: the session cookie and the protection of every form
  against cross-site requests (an HMAC token bound to the session, and a
  same-origin check of ``Sec-Fetch-Site``, ``Origin`` or ``Referer``).
* :mod:`web.app.routes`: the pages under ``/app``, each calling the same
  functions as the JSON API's routes (accounts, ``/me/certificates``,
  ``/lots/{id}``, ``/certificates/{id}``), so no rule is implemented twice.
"""
