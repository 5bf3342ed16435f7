"""The test brokers' KRaft cluster ids must survive ``kafka-storage format``'s argparse.

CI once failed 16 integration tests at setup because a random id began with '-' and ``-t -Xy...`` read it as an
option.  ``new_cluster_id`` draws again in that case; these tests need no broker and no Java.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from tests import brokers


def _decode(cluster_id: str) -> bytes:
    return base64.urlsafe_b64decode(cluster_id + "==")


def test_id_starting_with_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # 0xf8 >> 2 == 62, base64url '-'
    plain = uuid.UUID(bytes=b"\x00" + bytes(range(1, 16)))
    assert base64.urlsafe_b64encode(dash_first.bytes).decode().startswith("-")
    drawn = iter([dash_first, plain])
    monkeypatch.setattr(brokers.uuid, "uuid4", lambda: next(drawn))

    cluster_id = brokers.new_cluster_id()

    assert not cluster_id.startswith("-")
    assert _decode(cluster_id) == plain.bytes


def test_ids_are_22_char_base64url_of_16_bytes() -> None:
    ids = {brokers.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(_decode(cluster_id)) == 16
