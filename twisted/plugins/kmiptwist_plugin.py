"""The `twistd kmip` plugin: a KMIP key server."""

from twisted.application.service import ServiceMaker

kmiptwist = ServiceMaker("kmiptwist", "kmiptwist.tap", "A KMIP key server (kmiptwist).", "kmip")
