"""Packaging for kmiptwist, a KMIP key server on Twisted."""

from setuptools import find_packages, setup

setup(
    name="kmiptwist",
    version="0.1.0.dev0",
    description="A KMIP key server on Twisted: keys wrapped by a root key, sqlite store, tenants by TLS certificate",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    package_data={
        "twisted": [
            "plugins/kmiptwist_plugin.py",
            "plugins/kmiptwist_keyprotect_emulator.py",
        ]
    },
    install_requires=[
        "Twisted[tls]>=24.7.0",
        "pyOpenSSL>=24.2.1",
        "service-identity>=24.1.0",
        "cryptography>=43.0.0",
        "treq>=24.9.1",
        "attrs>=23.1.0",
        "zope.interface>=6.0",
    ],
    extras_require={
        "test": [
            "PyKMIP>=0.10.0",
            "hypothesis>=6.100",
        ],
        "dev": [
            "PyKMIP>=0.10.0",
            "hypothesis>=6.100",
            "ruff>=0.5",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "towncrier>=23.0",
        ],
    },
    entry_points={"console_scripts": ["kmiptwist = kmiptwist.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Security :: Cryptography",
    ],
)
