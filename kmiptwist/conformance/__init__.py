"""Conformance: replay the OASIS KMIP profile test cases against a running server.

A client-side tool, never loaded by the server: ``python -m kmiptwist.conformance``
runs every case in the case directory (``$KMIP_TESTCASES_DIR``, by default
``../shared/kmip/testcases`` beside the repository) and prints, per profile and KMIP
version, how many cases pass.  :mod:`.cases` finds and reads case files,
:mod:`.runner` plays them over TLS, :mod:`.compare` judges the responses (and lists
the differences it tolerates), :mod:`.report` prints the table.
"""
