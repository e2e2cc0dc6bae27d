"""Tests that the layers import only downwards (DESIGN.md, STYLE.md "Shape")."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

PACKAGE = FilePath(__file__).parent().parent().child("kmiptwist")


def _run(statement: str) -> subprocess.CompletedProcess[str]:
    """Run ``statement`` in a fresh interpreter that can import kmiptwist.

    trial runs in ``_trial_temp``, so the parent's ``sys.path`` is passed on.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    return subprocess.run(
        [sys.executable, "-c", statement], env=env, capture_output=True, text=True, timeout=120
    )


class ImportTests(SynchronousTestCase):
    """What importing a module drags in."""

    def assert_statement_succeeds(self, statement: str) -> None:
        result = _run(statement)
        self.assertEqual(result.returncode, 0, result.stderr or result.stdout)

    def test_codec_without_twisted(self) -> None:
        """The codec, framer and message layer work without Twisted, so they can be
        reused by any client or tool."""
        self.assert_statement_succeeds(
            "import sys, kmiptwist.ttlv, kmiptwist.framing, kmiptwist.messages,"
            " kmiptwist.xml_encoding\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')\n"
            "sys.exit('twisted was imported: ' + ', '.join(loaded) if loaded else 0)\n"
        )

    def test_tap_without_reactor(self) -> None:
        """Importing the twistd plugin's module does not install a reactor, so
        ``twistd --reactor`` still chooses the reactor."""
        self.assert_statement_succeeds(
            "import sys, kmiptwist.tap\n"
            "installed = 'twisted.internet.reactor' in sys.modules\n"
            "sys.exit('the reactor was installed' if installed else 0)\n"
        )

    def test_server_without_conformance_tool(self) -> None:
        """The server never loads the conformance runner (a client-side tool that may
        import test helpers): importing the twistd plugin's module leaves it out."""
        self.assert_statement_succeeds(
            "import sys, kmiptwist.tap, kmiptwist.service\n"
            "loaded = sorted(m for m in sys.modules"
            " if m.startswith(('kmiptwist.conformance', 'kmiptwist.testing')))\n"
            "sys.exit('the server imported ' + ', '.join(loaded) if loaded else 0)\n"
        )

    def test_service_without_reactor(self) -> None:
        """Importing the service module does not install a reactor either."""
        self.assert_statement_succeeds(
            "import sys, kmiptwist.service\n"
            "installed = 'twisted.internet.reactor' in sys.modules\n"
            "sys.exit('the reactor was installed' if installed else 0)\n"
        )


def _imported_modules(source: str) -> set[str]:
    """Every module named by an import statement in ``source`` (relative ones resolved
    loosely: ``from .testing import x`` counts as ``.testing``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return names


class SourceScanTests(SynchronousTestCase):
    """Rules checked by reading the source."""

    def production_modules(self) -> list[FilePath[str]]:
        # kmiptwist.testing (test helpers) and kmiptwist.conformance (a client-side
        # tool that may start a server with them) are not server code.
        tools = [PACKAGE.child("testing").path + os.sep, PACKAGE.child("conformance").path + os.sep]
        return [
            path
            for path in PACKAGE.walk()
            if path.basename().endswith(".py") and not path.path.startswith(tuple(tools))
        ]

    def test_production_never_imports_testing(self) -> None:
        """Test helpers (fake stores, fake root keys) can never end up serving real
        clients: no production module imports kmiptwist.testing."""
        offenders = []
        for path in self.production_modules():
            for name in _imported_modules(path.getContent().decode("utf-8")):
                if name.startswith("kmiptwist.testing") or name.lstrip(".").startswith("testing"):
                    offenders.append(f"{path.path}: {name}")
        self.assertEqual(offenders, [])

    def test_no_module_level_reactor_import(self) -> None:
        """No production module imports the global reactor at import time."""
        offenders = []
        for path in self.production_modules():
            tree = ast.parse(path.getContent().decode("utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.module == "twisted.internet":
                    if any(alias.name == "reactor" for alias in node.names):
                        offenders.append(path.path)
                elif isinstance(node, ast.Import):
                    if any(alias.name == "twisted.internet.reactor" for alias in node.names):
                        offenders.append(path.path)
        self.assertEqual(offenders, [])

    def test_scan_sees_the_package(self) -> None:
        """The scans above read the real package (guards against an empty walk)."""
        names = {path.basename() for path in self.production_modules()}
        self.assertIn("protocol.py", names)
        self.assertIn("ttlv.py", names)
        self.assertEqual(
            [p.path for p in self.production_modules() if p.parent().basename() == "testing"], []
        )
