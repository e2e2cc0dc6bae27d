"""A faithful IBM Key Protect + IAM emulator (twisted.web), for tests, demos and benchmarks.

See :mod:`kmiptwist.testing.keyprotect_emulator` for the public names and
``twistd kmip-keyprotect-emulator --help`` to run it as its own process.
"""
