"""The hand-built text frames are byte for byte what websockets serializes."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from chatgate.transport.send_many import offers_send_many, serialize_text_frames


def _reference(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


@pytest.mark.parametrize(
    "size", [0, 1, 125, 126, 127, 1000, 65_535, 65_536, 70_000], ids=lambda n: f"{n}B"
)
def test_each_length_encoding_matches_websockets(size: int) -> None:
    text = "x" * size
    assert serialize_text_frames([text.encode()]) == _reference(text)


def test_the_length_counts_utf8_bytes() -> None:
    # 63 two-byte characters: 126 bytes, the first length that needs 16 bits.
    text = "é" * 63
    assert serialize_text_frames([text.encode()]) == _reference(text)
    assert serialize_text_frames([text.encode()])[1] == 126


def test_frames_are_concatenated_in_order() -> None:
    texts = ["first", "é" * 200, "", '{"type":"pong"}', "y" * 70_000]
    assert serialize_text_frames([t.encode() for t in texts]) == b"".join(
        _reference(t) for t in texts
    )


def test_nothing_for_no_texts() -> None:
    assert serialize_text_frames([]) == b""


def test_the_extension_is_read_from_the_scope() -> None:
    assert offers_send_many({"extensions": {"chatgate.send_many": {}}}) is True
    assert offers_send_many({"extensions": {"websocket.http.response": {}}}) is False
    assert offers_send_many({}) is False
