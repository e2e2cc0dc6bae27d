"""The admin HTTP JSON API: tenants, certificates, objects, the built-in CA, the server.

One module per resource family (:mod:`tenants`, :mod:`certificates`, :mod:`objects`,
:mod:`ca`, :mod:`server`) over the plumbing in :mod:`api`; :mod:`listener` serves them
on a unix socket (and optionally mutual TLS), never on the KMIP port; :mod:`client`
is the blocking client the ``kmiptwist`` command uses.
"""
