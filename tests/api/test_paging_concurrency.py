"""Keyset paging stays correct while rows are inserted between pages."""

from __future__ import annotations

import random
import threading

from porter.bundle.v1 import porter_bundle_pb2 as pb
from porter.bundle.v1.installation_pb2 import BundleReference, Installation


def make(ns: str, name: str) -> Installation:
    return Installation(
        namespace=ns, name=name, bundle=BundleReference(repository="example.com/app", tag="v1")
    )


def test_walk_sees_every_existing_row_once_while_inserts_interleave(stub, channel):
    namespaces = ["a", "b", "c"]
    existing = {(ns, f"inst-{i:03d}") for ns in namespaces for i in range(0, 120, 2)}
    for ns, name in sorted(existing):
        stub.CreateInstallation(pb.CreateInstallationRequest(installation=make(ns, name)))

    # Odd-numbered names land between existing rows, before and after the cursor.
    pending = [(ns, f"inst-{i:03d}") for ns in namespaces for i in range(1, 120, 2)]
    random.Random(7).shuffle(pending)
    stop = threading.Event()

    def insert() -> None:
        for ns, name in pending:
            if stop.is_set():
                return
            stub.CreateInstallation(pb.CreateInstallationRequest(installation=make(ns, name)))

    writer = threading.Thread(target=insert)
    writer.start()
    try:
        seen: list[tuple[str, str]] = []
        token = ""
        while True:
            resp = stub.ListInstallations(
                pb.ListInstallationsRequest(all_namespaces=True, page_size=7, page_token=token)
            )
            seen += [(i.namespace, i.name) for i in resp.installations]
            token = resp.next_page_token
            if not token:
                break
    finally:
        stop.set()
        writer.join()

    assert len(seen) == len(set(seen)), "a row was repeated"
    assert seen == sorted(seen), "rows are out of (namespace, name) order"
    assert existing <= set(seen), f"rows were skipped: {sorted(existing - set(seen))[:5]}"
    assert set(seen) <= existing | set(pending)
