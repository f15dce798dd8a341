"""The SSE decoder: correct for every chunk boundary, never raises on any bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nbchat.sse import ServerSentEvent, SSEDecoder, iter_events

STREAM = (
    "\ufeff: a comment\n"
    'data: {"a": "é — 漢字 🎉"}\n\n'
    "event: update\r\nid: 7\r\nretry: 1500\r\ndata: line one\r\ndata: line two\r\n\r\n"
    "data:no-space\r\rdata: [DONE]\n\n"
).encode()

EXPECTED = [
    ServerSentEvent(data='{"a": "é — 漢字 🎉"}'),
    ServerSentEvent(data="line one\nline two", event="update", id="7", retry=1500),
    ServerSentEvent(data="no-space", id="7", retry=1500),
    ServerSentEvent(data="[DONE]", id="7", retry=1500),
]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    return list(iter_events(chunks))


def test_whole_stream():
    assert decode([STREAM]) == EXPECTED


def test_every_single_split_point():
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_one_byte_at_a_time():
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_unterminated_event_is_dropped_at_end():
    assert decode([b"data: done\n\ndata: half"]) == [ServerSentEvent(data="done")]


def test_events_without_data_are_not_dispatched():
    assert decode([b"event: ping\n\n: keepalive\n\n"]) == []


def test_split_inside_a_multibyte_character():
    raw = 'data: "漢"\n\n'.encode()
    for cut in range(len(raw)):
        assert decode([raw[:cut], raw[cut:]]) == [ServerSentEvent(data='"漢"')]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts):
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert decode(pieces) == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_arbitrary_bytes_never_raise(chunks):
    decoder = SSEDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            assert isinstance(event.data, str)
    decoder.flush()
