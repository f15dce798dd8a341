"""The SSE decoder: correct for every chunk boundary, never raises on any bytes; the client
over any bytes raises only nbchat's own errors."""

from __future__ import annotations

import json

import httpx2 as httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from nbchat.client import ChatClient
from nbchat.errors import NbChatError
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


# -- generated streams: any valid stream, any split ------------------------------------

_value = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
_name = st.text(st.characters(codec="utf-8", exclude_characters="\r\n:"), min_size=1, max_size=8)
_eol = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def event_streams(draw) -> tuple[bytes, list[ServerSentEvent]]:
    """A valid event stream and the events the WHATWG rules say it holds."""
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    retry: int | None = None
    for _ in range(draw(st.integers(0, 6))):
        kind = None
        if draw(st.booleans()):
            lines.append(":" + draw(_value))  # a comment
        if draw(st.booleans()):
            kind = draw(_name)
            lines.append(f"event: {kind}")
        if draw(st.booleans()):
            value = draw(_value)
            lines.append(f"id: {value}")
            if "\0" not in value:
                last_id = value
        if draw(st.booleans()):
            retry = draw(st.integers(0, 10**6))
            lines.append(f"retry: {retry}")
        data = draw(st.lists(_value, max_size=3))
        written = [draw(st.sampled_from(["data: ", "data:"])) + d for d in data]
        lines += written
        data = [w[6:] if w.startswith("data: ") else w[5:] for w in written]  # one space goes
        lines.append("")  # the blank line that dispatches
        if data:
            expected.append(ServerSentEvent("\n".join(data), kind or "message", last_id, retry))
    raw = ""
    for line in lines:
        eol = draw(_eol)
        if not line and raw.endswith("\r") and eol == "\n":
            eol = "\r"  # CR then LF would be one CRLF, not an empty line
        raw += line + eol
    if draw(st.booleans()):
        raw = "\ufeff" + raw
    return raw.encode(), expected


@settings(max_examples=300, deadline=None)
@given(event_streams(), st.lists(st.integers(min_value=0), max_size=10))
def test_any_generated_stream_split_anywhere_gives_its_events(stream, cuts):
    raw, expected = stream
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert decode(pieces) == expected


# -- the client over arbitrary bytes raises only nbchat's own errors ----------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_field = st.sampled_from(["choices", "delta", "content", "usage", "error", "finish_reason"])
_chunkish = st.recursive(
    _json,
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(_field | st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
_event = st.one_of(
    st.binary(max_size=30),
    _chunkish.map(lambda v: f"data: {json.dumps(v)}\n\n".encode()),
    st.just(b"data: [DONE]\n\n"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=6))
def test_client_over_arbitrary_bytes_raises_only_nbchat_errors(events):
    body = b"".join(events)
    client = ChatClient(
        base_url="http://mock.test/v1",
        max_retries=1,
        sleep=lambda s: None,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=body
            )
        ),
    )
    stream = client.stream({"model": "m", "messages": []})
    try:
        text = "".join(stream)
    except NbChatError:
        return
    assert isinstance(text, str) and stream.reply.text == text


def test_a_final_cr_ends_the_last_line():
    assert decode([b"data: x\r\r"]) == [ServerSentEvent(data="x")]
    assert decode([b"data: x\r", b"\r"]) == [ServerSentEvent(data="x")]
    assert decode([b"data: x\r"]) == []  # the event still lacks its blank line
