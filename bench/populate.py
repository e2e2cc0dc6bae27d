"""Fill a server's store with named AES-256 keys fast, beside the running server.

* ``kmiptwist``: kmiptwist's own request processor in this process, on the server's
  sqlite database (a second SQLiteStore: WAL lets it write while the server reads),
  sending vCenter's Create with a Name attribute, 512 at a time so that the store's
  group commit batches them.  The objects are exactly what Create over TLS makes:
  wrapped by the data directory's root key, Pre-Active, with a Digest.
* ``pykmip``: PyKMIP's own SQLAlchemy classes (``kmip.pie.objects.SymmetricKey``)
  on its database, owned by the benchmark client's identity (the certificate's CN,
  as PyKMIP's session assigns it) under the ``default`` policy, 2,000 per commit.
  PyKMIP keeps key material in plaintext, so there is nothing to wrap.

Writes the new objects' Unique Identifiers, in order, as a JSON list to ``--out``.

    python bench/populate.py kmiptwist --data-dir D --prefix bench- --count 1000 --out uids.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def populate_kmiptwist(data_dir: str, prefix: str, count: int, start: int) -> list[str]:
    """Create the keys through kmiptwist's processor on the data directory's store."""
    from twisted.internet import defer, task

    from kmiptwist import ttlv
    from kmiptwist.datadir import DataDirectory
    from kmiptwist.engine import Engine, SingleRootKey
    from kmiptwist.pki import fingerprint, load_certificate
    from kmiptwist.processor import KMIPProcessor, Peer
    from kmiptwist.store.sqlite import SQLiteStore
    from kmiptwist.testing.messages import (
        attribute_1x,
        name_1x,
        read_response,
        request,
        template_1x,
    )
    from kmiptwist.vocabulary.enums import CryptographicAlgorithm, ObjectType, Operation
    from kmiptwist.vocabulary.tags import Tag
    from kmiptwist.wrapping.cache import MaterialCache
    from kmiptwist.wrapping.local import LocalRootKeyWrapper

    directory = DataDirectory(data_dir)
    certificate = load_certificate(directory.client_certificate_path.getContent())

    def create(name: str) -> bytes:
        attributes = [
            attribute_1x(
                "Cryptographic Algorithm",
                ttlv.enumeration(Tag.CRYPTOGRAPHIC_ALGORITHM, CryptographicAlgorithm.AES),
            ),
            attribute_1x(
                "Cryptographic Usage Mask", ttlv.integer(Tag.CRYPTOGRAPHIC_USAGE_MASK, 12)
            ),
            attribute_1x("Cryptographic Length", ttlv.integer(Tag.CRYPTOGRAPHIC_LENGTH, 256)),
            attribute_1x("Name", name_1x(name)),
        ]
        payload = [
            ttlv.enumeration(Tag.OBJECT_TYPE, ObjectType.SYMMETRIC_KEY),
            template_1x(attributes),
        ]
        return request((1, 1), [(Operation.CREATE, payload, None)])

    async def run(reactor: object) -> list[str]:
        store = SQLiteStore(directory.database_path.path, reactor)  # type: ignore[arg-type]
        store.startService()
        try:
            tenant = await store.tenant_for_fingerprint(fingerprint(certificate))
            if tenant is None:
                raise SystemExit("the benchmark client certificate is not registered")
            engine = Engine(
                store=store,
                tenancy=store,
                root_keys=SingleRootKey(LocalRootKeyWrapper(directory.root_key())),
                cache=MaterialCache(0, 0, reactor),  # type: ignore[arg-type]
                clock=reactor,  # type: ignore[arg-type]
            )
            processor = KMIPProcessor(engine)
            peer = Peer("populate", fingerprint(certificate), tenant)
            uids: list[str] = []
            batch = 512
            for first in range(start, start + count, batch):
                names = [
                    f"{prefix}{n:06d}" for n in range(first, min(first + batch, start + count))
                ]
                replies = await defer.gatherResults(
                    [
                        defer.Deferred.fromCoroutine(processor.process(create(name), peer))
                        for name in names
                    ]
                )
                for reply in replies:
                    (item,) = read_response(reply).items
                    if not item.ok:
                        raise SystemExit(f"Create failed: {item.reason} {item.message}")
                    uids.append(item.get(Tag.UNIQUE_IDENTIFIER))
            return uids
        finally:
            await store.stopService()

    result: list[list[str]] = []

    def main(reactor: object) -> defer.Deferred[None]:
        done = defer.Deferred.fromCoroutine(run(reactor))
        return done.addCallback(result.append)

    try:
        task.react(main)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    return result[0]


def populate_pykmip(database: str, owner: str, prefix: str, count: int, start: int) -> list[str]:
    """Insert the keys with PyKMIP's SQLAlchemy objects, as its Create would store them."""
    import sqlalchemy
    from kmip.core import enums
    from kmip.pie import objects, sqltypes

    engine = sqlalchemy.create_engine(f"sqlite:///{database}", echo=False)
    sqltypes.Base.metadata.create_all(engine)
    factory = sqlalchemy.orm.sessionmaker(bind=engine, expire_on_commit=False)
    uids: list[str] = []
    now = int(time.time())
    batch = 2000
    for first in range(start, start + count, batch):
        keys = []
        for number in range(first, min(first + batch, start + count)):
            key = objects.SymmetricKey(
                enums.CryptographicAlgorithm.AES,
                256,
                os.urandom(32),
                masks=[enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT],
                name=f"{prefix}{number:06d}",
            )
            key._owner = owner
            key.operation_policy_name = "default"
            key.initial_date = now
            keys.append(key)
        with factory() as session:
            session.add_all(keys)
            session.commit()
            uids.extend(str(key.unique_identifier) for key in keys)
    return uids


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and fill the store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=("kmiptwist", "pykmip"))
    parser.add_argument("--data-dir", help="kmiptwist data directory")
    parser.add_argument("--database", help="PyKMIP sqlite database")
    parser.add_argument("--owner", help="PyKMIP owner (the client certificate's CN)")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--start", type=int, default=0, help="first number of the names")
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args(argv)
    started = time.monotonic()
    if arguments.server == "kmiptwist":
        uids = populate_kmiptwist(
            arguments.data_dir, arguments.prefix, arguments.count, arguments.start
        )
    else:
        uids = populate_pykmip(
            arguments.database, arguments.owner, arguments.prefix, arguments.count, arguments.start
        )
    with open(arguments.out, "w", encoding="utf-8") as out:
        json.dump(uids, out)
    print(
        f"{arguments.server}: {len(uids)} keys in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
