"""The businesses' consoles under ``/console``: the winery, the cellar, the
appraiser and lender, the merchant and the operator, in the same web app as the
holder's pages (:mod:`web.app`).

A business user logs in like a holder; :mod:`web.console.routes` shows the
sections for the roles the account's address holds on chain
(:func:`api.business.roles_of`, also the public ``GET /me/roles``). Each
section's pages live in their own module here and call the JSON API's route
functions, so nothing a console does is out of an API client's reach.
Charts are SVG drawn on the server (:mod:`web.charts`), each with a table.
"""
