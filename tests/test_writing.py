"""How the model writes: reasoning, the footer's whole bill, token probabilities, n choices.

Everything runs through `%%chat` against the mock server, whose thinking,
probabilities and choices are deterministic (nbchat.mockwriting), so the
expected numbers are computed from the same functions the server uses.
"""

from __future__ import annotations

import html
import math
import re
import sqlite3
import threading
import time

import pytest

from nbchat.errors import Interrupted, OptionError
from nbchat.logprobs import shade
from nbchat.mockwriting import thought, token_p
from nbchat.reasoning import ThinkSplitter, split_message

from .conftest import run
from .test_render import Recorder

MODES = ["content", "field", "think"]
HOSTILE = "<img src=x onerror=alert(1)>"


def magics(ip):
    return ip.find_cell_magic("chat").__self__


def chat_bodies(server):
    return [r.body for r in server.requests if r.path.endswith("/chat/completions")]


def outputs(captured):
    return [o.data for o in captured.outputs]


@pytest.fixture
def history(ip, tmp_path):
    path = tmp_path / "record.sqlite"
    ip.run_line_magic("config", f"ChatMagics.history_path = {str(path)!r}")
    return path


def rows(path):
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM exchanges ORDER BY id").fetchall()


# -- reasoning ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_thinking_is_shown_apart_kept_and_never_sent_back(ip, server, history, mode):
    result, captured = run(ip, f"%%chat -m gpt-4o-mini@reasoning={mode} -o r\nhello {HOSTILE}")
    assert result.error_in_exec is None
    reply = ip.user_ns["r"]
    expected = thought([{"role": "user", "content": f"hello {HOSTILE}"}])
    assert reply.reasoning.strip() == expected.strip()
    assert "The user wrote" not in reply.text and "<think>" not in reply.text
    assert reply.text.startswith("## Echo")
    data = outputs(captured)
    thinking, answer = data[0], data[1]
    # Shown apart, collapsed, escaped: the hostile tag is text inside nbchat's <details>.
    assert thinking["text/html"].startswith('<details class="nbchat-thinking">')
    assert html.escape(f"hello {HOSTILE}") in thinking["text/html"]
    assert "<img" not in thinking["text/html"]
    assert re.search(r"Thinking · [\d,]+ characters", thinking["text/html"])
    assert "The user wrote" not in answer["text/markdown"]
    # The next request's assistant message is the answer alone.
    run(ip, "%%chat -m gpt-4o-mini\nand again")
    last = chat_bodies(server)[-1]
    assistant = [m for m in last["messages"] if m["role"] == "assistant"]
    assert assistant == [{"role": "assistant", "content": reply.text}]
    assert "reasoning_content" not in str(last) and "The user wrote" not in str(last)
    # The record keeps the thinking.
    first = rows(history)[0]
    assert first["reasoning"].strip() == expected.strip()
    assert first["reply"] == reply.text


def test_no_stream_thinking_is_taken_apart_too(ip, server):
    for mode in MODES:
        run(ip, f"%%chat --no-stream -m gpt-4o-mini@reasoning={mode} -o r\nhi")
        reply = ip.user_ns["r"]
        assert reply.reasoning and "The user wrote: hi" in reply.reasoning, mode
        assert reply.text.startswith("## Echo"), mode


def test_the_footer_tells_reasoning_tokens_and_first_answer_token(ip, server):
    _, captured = run(ip, "%%chat -m gpt-4o-mini@reasoning=content -o r\nhi")
    reply = ip.user_ns["r"]
    footer = outputs(captured)[-1]["text/plain"]
    usage = reply.usage
    n_thought = len(re.findall(r"\S+\s*|\s+", thought([{"role": "user", "content": "hi"}])))
    assert usage.reasoning_tokens == n_thought
    tokens = (
        f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
        f" = {usage.total_tokens} tokens ({usage.reasoning_tokens} reasoning)"
    )
    assert tokens in footer
    assert "first token" in footer and "first answer token" in footer
    assert reply.answer_ttft >= reply.ttft


def test_interrupting_while_thinking_keeps_what_arrived(ip, server, history):
    ip.run_line_magic("config", "ChatMagics.display_mode = 'final'")
    session = magics(ip).session

    def stop_when_thinking() -> None:
        while (running := session._running.get("default")) is None or not (
            running.chat and running.chat.reasoning
        ):
            time.sleep(0.005)
        session.stop()

    stopper = threading.Thread(target=stop_when_thinking)
    stopper.start()
    result, captured = run(
        ip, "%%chat -m gpt-4o-mini@reasoning=field,delay=0.05 -o r\nthink about it"
    )
    stopper.join()
    assert isinstance(result.error_in_exec, Interrupted)
    assert "while thinking" in result.error_in_exec.message
    partial = ip.user_ns["r"]
    assert partial.text == "" and partial.reasoning
    assert "The user wrote: think about it".startswith(partial.reasoning[:20])
    assert session.conversation().turns == []  # no answer: nothing joins the conversation
    assert any(partial.reasoning in d.get("text/plain", "") for d in outputs(captured))
    (row,) = rows(history)
    assert row["status"] == "interrupted" and row["reasoning"] == partial.reasoning


def test_effort_is_sent_and_checked(ip, server):
    run(ip, "%%chat --effort low\nhi")
    assert chat_bodies(server)[-1]["reasoning_effort"] == "low"
    server.clear()
    result, _ = run(ip, "%%chat --effort hgh\nhi")
    assert isinstance(result.error_in_exec, OptionError)
    assert "--effort must be one of" in result.error_in_exec.message
    assert chat_bodies(server) == []


def test_live_thinking_streams_then_collapses(ip, server):
    saved = ip.display_pub
    ip.display_pub = recorder = Recorder()
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", "ChatMagics.update_interval = 0")
    try:
        ip.run_cell(f"%%chat -m gpt-4o-mini@reasoning=field,delay=0.002\n{HOSTILE}")
    finally:
        ip.display_pub = saved
    messages = recorder.messages
    first_clear = next(i for i, m in enumerate(messages) if m["kind"] == "clear_output")
    live = messages[:first_clear]
    assert live[0]["data"]["text/plain"] == "Thinking…"
    shown = "".join(m["data"].get("text/html", "") for m in live)
    assert html.escape(HOSTILE) in shown and "<img" not in shown
    # After the collapse: one <details>, then the answer streams below it.
    after = messages[first_clear + 1]
    assert after["data"]["text/html"].startswith('<details class="nbchat-thinking">')


def test_think_splitter_across_any_chunking():
    full = "  <think>\nI ponder </thi ng>. ok</think>\n\nThe answer <think> x"
    for size in range(1, 12):
        splitter, thinking, answer = ThinkSplitter(), "", ""
        for i in range(0, len(full), size):
            a, b = splitter.push(full[i : i + size])
            thinking, answer = thinking + a, answer + b
        a, b = splitter.end()
        assert (thinking + a, answer + b) == ("I ponder </thi ng>. ok", "The answer <think> x")
    assert split_message({"content": "<thinking is fun"}) == (None, "<thinking is fun")
    assert split_message({"content": "x", "reasoning": "y"}) == ("y", "x")


# -- the footer's bill ----------------------------------------------------------------------


def test_predicted_output_is_sent_and_billed(ip, server):
    ip.user_ns["draft"] = "You said: the cat sat on a mat and flew away"
    _, captured = run(ip, "%%chat --predict draft -o r\nthe cat sat")
    body = chat_bodies(server)[-1]
    assert body["prediction"] == {"type": "content", "content": ip.user_ns["draft"]}
    usage = ip.user_ns["r"].usage
    assert (usage.accepted_prediction_tokens, usage.rejected_prediction_tokens) == (5, 6)
    footer = outputs(captured)[-1]["text/plain"]
    assert "prediction 5 accepted, 6 rejected" in footer
    server.clear()
    result, _ = run(ip, "%%chat --predict nothing_here\nhi")
    assert isinstance(result.error_in_exec, OptionError) and chat_bodies(server) == []


# -- logprobs -------------------------------------------------------------------------------


def test_logprobs_shading_and_alternatives_match_the_server(ip, server):
    _, captured = run(ip, "%%chat --logprobs 3 -m gpt-4o-mini@sure=0.7 -o r\nthe cat sat")
    body = chat_bodies(server)[-1]
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    reply = ip.user_ns["r"]
    logprobs = reply.logprobs
    assert "".join(t.token for t in logprobs) == reply.text
    for i, token in enumerate(logprobs):
        assert token.p == pytest.approx(token_p(i, 0, 0.7))
        assert len(token.alternatives) == 3 and token.alternatives[0][0] == token.token
    data = outputs(captured)
    answer, view, footer = data[0], data[1], data[2]
    assert answer["text/markdown"].startswith("## Echo")  # the Markdown answer, as always
    spans = re.findall(
        r'<span(?: style="background:([^"]+)")? title="([^"]*)">([^<]*)</span>', view["text/html"]
    )
    assert len(spans) == len(logprobs)
    for (background, title, text), token in zip(spans, logprobs, strict=True):
        assert (background or "rgba(255,99,71,0)") == shade(token.p)
        assert html.unescape(title).startswith(f"p {token.p:.2f}")
        assert html.unescape(text) == token.token
        for alt, lp in token.alternatives[1:]:
            shown = alt.replace("\n", "↵")
            assert f"{shown} {math.exp(lp) * 100:.1f} %" in html.unescape(title)
    mean = sum(t.p for t in logprobs) / len(logprobs)
    below = sum(t.p < 0.5 for t in logprobs)
    assert f"mean p {mean:.2f} · {below} tokens below 50 %" in view["text/html"]
    assert view["text/plain"] == f"[{logprobs.summary()}]"
    assert "completion" in footer["text/plain"]
    records = logprobs.records()
    assert records[0]["token"] == logprobs[0].token and records[0]["p"] == logprobs[0].p


def test_a_hostile_token_shows_as_text(ip, server):
    token = "<img/src=x/onerror=alert(1)>"  # one token: no white space in it
    _, captured = run(ip, f"%%chat --logprobs -m gpt-4o-mini@reply=verbatim -o r\n{token}")
    assert [t.token for t in ip.user_ns["r"].logprobs] == [token]
    view = outputs(captured)[1]["text/html"]
    assert "<img" not in view
    assert f">{html.escape(token, quote=False)}</span>" in view
    spans = re.findall(r'<span[^>]*title="([^"]*)"', view)
    assert len(spans) == 1 and "<" not in spans[0]


def test_logprobs_to_pandas(ip, server):
    pytest.importorskip("pandas")
    run(ip, "%%chat --logprobs -o r\nhi")
    frame = ip.user_ns["r"].logprobs.to_pandas()
    assert list(frame.columns) == ["position", "token", "p", "logprob", "alternatives"]
    assert len(frame) == len(ip.user_ns["r"].logprobs)


def test_logprobs_stream_stays_linear_in_bytes(ip, server):
    saved = ip.display_pub
    ip.display_pub = recorder = Recorder()
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", "ChatMagics.update_interval = 0")
    try:
        ip.run_cell("%%chat --logprobs -o r -m gpt-4o-mini@reply=paragraph,chunks=2000\nx")
    finally:
        ip.display_pub = saved
    reply = ip.user_ns["r"]
    first_clear = next(i for i, m in enumerate(recorder.messages) if m["kind"] == "clear_output")
    live = recorder.messages[:first_clear]
    sent = sum(len(v) for m in live for v in m["data"].values())
    assert sent < 12 * len(reply.text)  # plain Markdown while streaming, as any reply
    shaded = next(
        m for m in recorder.messages if "nbchat-logprobs" in m.get("data", {}).get("text/html", "")
    )
    per_token = len(shaded["data"]["text/html"]) / len(reply.logprobs)
    assert per_token < 160  # shaded once, at the end: ~134 bytes a token with 5 alternatives


def test_bad_logprobs_value_sends_nothing(ip, server):
    result, _ = run(ip, "%%chat --logprobs 25\nhi")
    assert isinstance(result.error_in_exec, OptionError)
    assert chat_bodies(server) == []


# -- n choices ------------------------------------------------------------------------------


def test_three_choices_side_by_side_and_pick_continues(ip, server, history):
    _, captured = run(ip, "%%chat -n 3 -t 2 -o c\nthe cat sat on the mat today")
    body = chat_bodies(server)[-1]
    assert body["n"] == 3
    choices = ip.user_ns["c"]
    assert len(choices) == 3
    texts = [r.text for r in choices]
    assert len(set(texts)) == 3  # temperature 2: the mock varies choices 2 and 3
    assert all(r.reply.finish_reason == "stop" for r in choices)
    table = outputs(captured)[0]["text/markdown"]
    assert table.count("finish: stop") == 3
    footer = outputs(captured)[-1]["text/plain"]
    usage = choices[0].reply.usage
    assert footer.startswith("3 choices · ")
    assert f"{usage.completion_tokens} completion" in footer
    assert magics(ip).session.conversation().turns == []
    run(ip, "%chat pick 2")
    (turn,) = magics(ip).session.conversation().turns
    assert turn.reply.text == texts[1]
    run(ip, "%%chat\nnext")
    assistant = [m for m in chat_bodies(server)[-1]["messages"] if m["role"] == "assistant"]
    assert assistant == [{"role": "assistant", "content": texts[1]}]
    assert rows(history)[0]["reply"] == texts[1]  # the record keeps the picked choice


def test_choices_at_temperature_zero_agree(ip, server):
    run(ip, "%%chat -n 3 -t 0 -o c\nthe cat sat")
    assert len({r.text for r in ip.user_ns["c"]}) == 1


def test_n_is_checked(ip, server):
    result, _ = run(ip, "%%chat -n 0\nhi")
    assert isinstance(result.error_in_exec, OptionError) and chat_bodies(server) == []
    result, _ = run(ip, "%%chat -n 2 -m gpt-4o-mini,gpt-4o\nhi")
    assert isinstance(result.error_in_exec, OptionError) and chat_bodies(server) == []


def test_a_version_2_record_gains_the_reasoning_columns(tmp_path):
    from nbchat.record import SCHEMA, SCHEMA_VERSION, Record

    path = tmp_path / "old.sqlite"
    old = SCHEMA.replace(
        ",\n    reasoning TEXT,\n    reasoning_time REAL,\n    answer_ttft REAL", ""
    )
    assert old != SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(old)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO exchanges (notebook, session, conversation, status, started, prompt,"
            " request) VALUES ('nb', 's', 'default', 'complete', 1, '{\"content\": \"x\"}', '{}')"
        )
    record = Record(path)
    (row,) = record.recent("nb", 5)
    assert row.reasoning is None
    new = record.start(
        notebook="nb", session="s", conversation="default", prompt="{}", request="{}"
    )
    record.finish(new, status="complete", reasoning="hmm", reasoning_time=1.5, answer_ttft=2.0)
    (latest,) = [r for r in record.recent("nb", 5) if r.id == new]
    assert (latest.reasoning, latest.reasoning_time, latest.answer_ttft) == ("hmm", 1.5, 2.0)
    assert latest.to_reply().reasoning == "hmm"
    record.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


def test_long_thinking_streams_linear_in_bytes(ip, server):
    """Thinking goes out line by line (finished lines once), at most once per interval."""
    saved = ip.display_pub
    ip.display_pub = recorder = Recorder()
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", "ChatMagics.update_interval = 0.01")
    words = " ".join(f"word{i}" for i in range(3000))  # the mock's thought quotes it: ~26 KB
    try:
        ip.run_cell(f"%%chat -o r -m gpt-4o-mini@reasoning=content\n{words}")
    finally:
        ip.display_pub = saved
    thinking = ip.user_ns["r"].reasoning
    first_clear = next(i for i, m in enumerate(recorder.messages) if m["kind"] == "clear_output")
    live = recorder.messages[:first_clear]
    sent = sum(len(m["data"].get("text/plain", "")) for m in live)
    assert "".join(m["data"]["text/plain"] for m in live if m["id"] is None)  # lines went out
    assert sent < 12 * len(thinking)  # one resend of the open line per delta: ~170 x


def test_json_replies_show_thinking_too(ip, server):
    _, captured = run(ip, "%%chat --json -o r -m gpt-4o-mini@reply=json,reasoning=field\nhi")
    data = outputs(captured)
    assert data[0]["text/html"].startswith('<details class="nbchat-thinking">')
    assert "application/json" in data[1]
    assert ip.user_ns["r"].parsed["echo"] == "hi"


def test_each_choice_has_its_own_finish_reason(ip, server):
    _, captured = run(ip, "%%chat -n 3 -t 1 --max-tokens 10 -o c\nthe cat sat on the mat")
    choices = ip.user_ns["c"]
    assert [r.reply.finish_reason for r in choices] == ["length", "stop", "stop"]
    assert [len(re.findall(r"\S+\s*|\s+", r.text)) for r in choices] == [10, 9, 8]
    table = outputs(captured)[0]["text/markdown"]
    assert table.count("finish: length") == 1 and table.count("finish: stop") == 2
    footer = outputs(captured)[-1]["text/plain"]
    assert "finish:" not in footer  # the request's footer: usage, not one choice's ending
    assert f"{choices[0].reply.usage.completion_tokens} completion" in footer


def test_n_refuses_no_stream(ip, server):
    result, _ = run(ip, "%%chat -n 2 --no-stream\nhi")
    assert isinstance(result.error_in_exec, OptionError) and chat_bodies(server) == []


def test_export_keeps_the_thinking_escaped(ip, server, tmp_path):
    import json

    run(ip, f"%%chat -o r -m gpt-4o-mini@reasoning=content\n{HOSTILE}")
    reply = ip.user_ns["r"]
    run(ip, f"%chat export {tmp_path / 'chat.md'}")
    run(ip, f"%chat export {tmp_path / 'chat.json'}")
    text = (tmp_path / "chat.md").read_text()
    details = text[text.index('<details class="nbchat-thinking">') : text.index("</details>")]
    assert "<img" not in details and "You said" not in details
    assert text.index(html.escape(f"The user wrote: {HOSTILE}")) < text.index("## Echo")
    (exchange,) = json.loads((tmp_path / "chat.json").read_text())["exchanges"]
    assert exchange["reply"]["reasoning"] == reply.reasoning
    assert "The user wrote" not in str(exchange["request"])
