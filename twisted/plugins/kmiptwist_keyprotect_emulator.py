"""The `twistd kmip-keyprotect-emulator` plugin: an emulated Key Protect for tests and demos."""

from twisted.application.service import ServiceMaker

kmiptwist_keyprotect_emulator = ServiceMaker(
    "kmiptwist Key Protect emulator",
    "kmiptwist.testing.keyprotect.tap",
    "An emulated IBM Key Protect and IAM on loopback, for tests, demos and benchmarks.",
    "kmip-keyprotect-emulator",
)
