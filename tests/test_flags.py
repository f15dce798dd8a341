"""Every %%chat flag, through ip.run_cell against the mock server.

Each request body the server receives is also validated against the official
CreateChatCompletionRequest schema by the `server` fixture at teardown.
"""

from __future__ import annotations

import json

import pytest
from traitlets import TraitError

from nbchat.errors import NbChatError, OptionError
from nbchat.mockserver import mock_reply
from nbchat.types import Reply

from .conftest import TEST_KEY, markdown_outputs, plain_outputs, run
from .openapi import validator


def sent(ip, cell: str, server) -> dict:
    """Run `cell`; return the one chat body the server received for it."""
    before = len(server.requests)
    result, captured = run(ip, cell)
    assert result.error_in_exec is None, captured.stdout
    chats = [r for r in server.requests[before:] if r.path.endswith("/chat/completions")]
    assert len(chats) == 1
    return chats[0].body


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        ("-t 0.7", "temperature", 0.7),
        ("--temperature 2", "temperature", 2.0),
        ("--top-p 0.25", "top_p", 0.25),
        ("--frequency-penalty -1.5", "frequency_penalty", -1.5),
        ("--presence-penalty 2", "presence_penalty", 2.0),
        ("--max-tokens 5", "max_tokens", 5),  # max_completion_tokens for OpenAI: below
        ("--seed -42", "seed", -42),
        ("--stop END", "stop", ["END"]),
        (r"--stop '\n' --stop '###'", "stop", ["\n", "###"]),
        ("--store", "store", True),
        ("--no-store", "store", False),
        ("--user alice-42", "user", "alice-42"),
    ],
)
def test_flag_reaches_the_server_with_the_right_type(ip, server, flags, field, value):
    body = sent(ip, f"%%chat {flags}\nhi", server)
    assert body[field] == value
    assert type(body[field]) is type(value)


def test_every_flag_at_once_makes_one_valid_request(ip, server):
    cell = (
        "%%chat -t 0 --top-p 1 --frequency-penalty 0.5 --presence-penalty -0.5 --max-tokens 3 "
        "--seed 7 --stop x --no-store --user u1 -m gpt-4o\nhello there"
    )
    body = sent(ip, cell, server)
    assert not list(validator("CreateChatCompletionRequest").iter_errors(body))
    expected = {
        "temperature": 0.0,
        "top_p": 1.0,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "max_tokens": 3,
        "seed": 7,
        "stop": ["x"],
        "store": False,
        "user": "u1",
        "model": "gpt-4o",
    }
    assert {k: body[k] for k in expected} == expected


def test_without_flags_no_optional_field_is_sent(ip, server):
    body = sent(ip, "%%chat\nhi", server)
    assert set(body) == {"model", "messages", "stream", "stream_options"}


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ("--temprature 3", "did you mean --temperature?"),
        ("-t 2.5", "between 0 and 2"),
        ("-t -0.1", "between 0 and 2"),
        ("-t hot", "must be a number"),
        ("-t nan", "must be a number"),
        ("--top-p 1.5", "between 0 and 1"),
        ("--frequency-penalty 3", "between -2 and 2"),
        ("--presence-penalty -2.01", "between -2 and 2"),
        ("--seed 1.5", "must be an integer"),
        ("--seed abc", "must be an integer"),
        ("--max-tokens 0", "at least 1"),
        ("--max-tokens 10.5", "must be an integer"),
        ("--stop a --stop b --stop c --stop d --stop e", "one to four"),
        ("--user ''", "non-empty"),
        ("-s 'unbalanced", "quotes"),
        ("--params '[1, 2]'", "JSON object"),
        ("--params '{not json}'", "JSON object"),
        ("""--params '{"messages": []}'""", "cannot set 'messages'"),
        ("""--params '{"stream": false}'""", "cannot set 'stream'"),
        ("""--params '{"temperature": 9}'""", "between 0 and 2"),
        ("""--params '{"n": 0}'""", "between 1 and 128"),
        ("-c 'no spaces'", "not a conversation name"),
        ("--seed 99999999999999999999", "between -9223372036854775808 and 9223372036854775807"),
        ("""--params '{"foo": NaN}'""", "--params foo holds NaN or infinity"),
        ("""--params '{"foo": [Infinity]}' --dry-run""", "--params foo holds NaN or infinity"),
        ("""--params '{"logit_bias": 5}'""", "logit_bias must be a JSON object, not 5"),
        ("""--params '{"service_tier": 7}'""", "service_tier must be one of 'auto'"),
        ("""--params '{"metadata": {"a": 1}}'""", "metadata['a'] must be a string, not 1"),
        ("""--params '{"response_format": {"type": "bogus"}}'""", "response_format.type must"),
        ("--params bad_metadata", "--params metadata must be a JSON object, not {1, 2}"),
        ("--params bad_metadata --dry-run", "--params metadata must be a JSON object"),
        ("--params not_json", "--params when is not JSON: Object of type datetime"),
        ("-i --dry-run", "-i could not expand {broken}: RuntimeError: no format for you"),
        ("-i", "-i could not expand {broken!s}: RuntimeError: no str for you"),
        ("--temperatur 1", "did you mean --temperature?"),
        ("--no-strea", "did you mean --no-stream?"),
        ("-o 'a b'", "-o takes a variable name, not 'a b'"),
        ("-o class", "-o takes a variable name, not 'class'"),
    ],
)
def test_bad_values_are_refused_locally_in_one_line(ip, server, flags, words):
    import datetime

    class Broken:
        def __format__(self, spec):
            raise RuntimeError("no format for you")

        def __str__(self):
            raise RuntimeError("no str for you")

    ip.user_ns.update(bad_metadata={"metadata": {1, 2}}, broken=Broken())
    ip.user_ns["not_json"] = {"when": datetime.datetime(2024, 1, 1)}
    body = "{broken!s}" if flags == "-i" else "{broken}"
    result, captured = run(ip, f"%%chat {flags}\n{body}")
    error = result.error_in_exec
    assert isinstance(error, OptionError), error
    assert words in str(error)
    assert not server.requests
    shown = captured.stdout.strip().splitlines()
    assert shown[0].startswith("\x1b[31mnbchat: ") and len(shown) <= 2
    assert "Traceback" not in captured.stdout


def test_params_merges_any_field_and_flags_win(ip, server):
    ip.user_ns["extra"] = {"n": 1, "logprobs": True, "top_logprobs": 2}
    body = sent(
        ip, """%%chat --params '{"temperature": 1.5, "service_tier": "flex"}' -t 0.2\nhi""", server
    )
    assert body["service_tier"] == "flex" and body["temperature"] == 0.2
    body = sent(ip, "%%chat --params extra\nhi", server)
    assert (body["n"], body["logprobs"], body["top_logprobs"]) == (1, True, 2)


def test_traits_set_defaults_and_cells_override_them(ip, server):
    ip.run_line_magic("config", "ChatMagics.temperature = 0.3")
    ip.run_line_magic("config", "ChatMagics.max_tokens = 50")
    ip.run_line_magic("config", "ChatMagics.stop = ['STOP']")
    ip.run_line_magic("config", "ChatMagics.params = {'service_tier': 'auto'}")
    body = sent(ip, "%%chat\nhi", server)
    assert body["temperature"] == 0.3 and body["max_tokens"] == 50
    assert body["stop"] == ["STOP"] and body["service_tier"] == "auto"
    body = sent(ip, "%%chat -t 1.1 --max-tokens 7\nhi", server)
    assert body["temperature"] == 1.1 and body["max_tokens"] == 7


@pytest.mark.parametrize(
    "setting",
    ["temperature = 3", "top_p = -1", "seed = 'x'", "params = {'messages': []}", "stop = ['']"],
)
def test_bad_trait_values_are_refused(ip, server, setting):
    magics = ip.find_cell_magic("chat").__self__
    name, _, value = setting.partition(" = ")
    before = getattr(magics, name)
    with pytest.raises(TraitError, match=r"must|cannot|expected"):
        setattr(magics, name, eval(value))
    assert getattr(magics, name) == before


def test_no_stream_sends_one_request_with_the_same_footer(ip, server):
    result, captured = run(ip, "%%chat --no-stream -o r\nhi")
    assert result.error_in_exec is None
    body = server.requests[-1].body
    assert body["stream"] is False and "stream_options" not in body
    reply = ip.user_ns["r"]
    assert reply.text == mock_reply(body["messages"], "gpt-4o-mini")
    assert markdown_outputs(captured) == [reply.text]
    footer = plain_outputs(captured)[-1]
    assert footer.startswith("gpt-4o-mini · ") and "completion" in footer and "$" in footer
    ip.run_line_magic("config", "ChatMagics.stream = False")
    assert sent(ip, "%%chat\nagain", server)["stream"] is False
    assert sent(ip, "%%chat --stream\nand again", server)["stream"] is True


@pytest.mark.parametrize(
    ("base_url", "choice", "field"),
    [
        ("https://api.openai.com/v1", "auto", "max_completion_tokens"),
        ("https://my-team.openai.azure.com/openai/v1", "auto", "max_completion_tokens"),
        ("http://127.0.0.1:8080/v1", "auto", "max_tokens"),  # llama.cpp, vLLM
        ("http://localhost:11434/v1", "auto", "max_tokens"),  # Ollama
        ("https://openai.example.com/v1", "auto", "max_tokens"),  # not OpenAI's own host
        ("http://127.0.0.1:8080/v1", "max_completion_tokens", "max_completion_tokens"),
        ("https://api.openai.com/v1", "max_tokens", "max_tokens"),
    ],
)
def test_max_tokens_is_sent_under_the_name_the_server_knows(ip, base_url, choice, field):
    ip.run_line_magic("config", f"ChatMagics.base_url = {base_url!r}")
    ip.run_line_magic("config", f"ChatMagics.max_tokens_field = {choice!r}")
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    for cell in (
        "%%chat --dry-run -o planned --max-tokens 9\nhi",
        "%%chat --dry-run -o planned --params '{\"" + other + "\": 9}'\nhi",
    ):
        result, captured = run(ip, cell)
        assert result.error_in_exec is None
        planned = ip.user_ns["planned"]
        assert planned[field] == 9 and other not in planned
        assert f'"{field}": 9' in captured.stdout  # --dry-run shows it
    ip.run_line_magic("config", "ChatMagics.max_tokens = 4")
    run(ip, "%%chat --dry-run -o planned\nhi")
    assert ip.user_ns["planned"][field] == 4


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_one_limit_is_sent_and_the_usual_order_picks_it(ip, server, name):
    ip.run_line_magic("config", f"ChatMagics.params = {{{name!r}: 50}}")
    assert sent(ip, "%%chat\nhi", server)["max_tokens"] == 50
    ip.run_line_magic("config", "ChatMagics.max_tokens = 40")  # a named trait beats params
    assert sent(ip, "%%chat\nhi", server)["max_tokens"] == 40
    given = "--params '{\"" + name + "\": 5}'"
    body = sent(ip, f"%%chat {given}\nhi", server)  # --params beats both
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body
    body = sent(ip, f"%%chat {given} --max-tokens 3\nhi", server)
    assert body["max_tokens"] == 3 and "max_completion_tokens" not in body  # the flag wins


def test_max_tokens_field_accepts_only_the_two_names_and_auto(ip):
    magics = ip.find_cell_magic("chat").__self__
    with pytest.raises(TraitError):
        magics.max_tokens_field = "max_new_tokens"
    magics.max_tokens_field = "MAX_TOKENS"
    assert magics.settings().limit_field == "max_tokens"


@pytest.mark.parametrize("flags", ["", "--no-stream -t 0.5 --stop x", "--json"])
def test_dry_run_shows_exactly_what_would_be_sent(ip, server, flags):
    ip.run_line_magic("config", "ChatMagics.organization = 'org-1'")
    run(ip, "%%chat\nearlier turn")
    result, captured = run(ip, f"%%chat --dry-run -o planned {flags} -s 'Be terse.'\nnext")
    assert result.error_in_exec is None
    assert len(server.requests) == 1  # nothing more was sent
    head, _, shown = captured.stdout.partition("\n\n")
    assert head.splitlines()[0] == f"POST {server.url}/chat/completions"
    assert "Authorization: Bearer sk-...cdef" in head and "OpenAI-Organization: org-1" in head
    assert TEST_KEY not in captured.stdout
    planned = ip.user_ns["planned"]
    assert json.loads(shown) == planned
    conv = ip.find_cell_magic("chat").__self__.session.conversation()
    assert conv.system_prompt is None and len(conv) == 1  # a dry run changes nothing
    run(ip, f"%%chat {flags} -s 'Be terse.'\nnext")
    assert server.requests[-1].body == planned


def test_prompt_is_sent_verbatim_without_interpolation(ip, server):
    text = "Use {x} and {{y}}, $HOME, %d, 100% and `code` ```fences``` \\n {'a': 1}"
    ip.user_ns["x"] = "EXPANDED"
    body = sent(ip, f"%%chat\n{text}", server)
    assert body["messages"][-1]["content"] == text
    body = sent(ip, f"%chat {text}", server)
    assert body["messages"][-1]["content"] == text
    body = sent(ip, """%chat What's "quoted" {x} $x?""", server)
    assert body["messages"][-1]["content"] == """What's "quoted" {x} $x?"""


def test_interpolation_expands_names_and_expressions_once(ip, server):
    ip.user_ns.update(df_rows=3, name="Ada", tricky="{__import__('os').getcwd()}")
    cell = "%%chat -i\n{name} has {df_rows * 2} rows; {{literal}}; {name!r:>8}; {tricky}; $name"
    body = sent(ip, cell, server)
    expected = "Ada has 6 rows; {literal};    'Ada'; {__import__('os').getcwd()}; $name"
    assert body["messages"][-1]["content"] == expected
    body = sent(ip, "%chat -i what is {name.upper()}?", server)
    assert body["messages"][-1]["content"] == "what is ADA?"


@pytest.mark.parametrize(
    ("body", "words"), [("{undefined_name}", "NameError"), ("{}", "empty"), ("{1/0}", "Zero")]
)
def test_interpolation_errors_are_one_line_and_send_nothing(ip, server, body, words):
    result, _ = run(ip, f"%%chat -i\n{body}")
    assert isinstance(result.error_in_exec, OptionError)
    assert words in str(result.error_in_exec)
    assert not server.requests


# -- JSON replies -----------------------------------------------------------------------

JSON_MODEL = "-m gpt-4o-mini@reply=json"


def test_json_sends_json_object_and_parses_the_reply(ip, server):
    result, captured = run(ip, f"%%chat --json {JSON_MODEL} -o r\nReply in JSON please")
    assert result.error_in_exec is None
    assert server.requests[-1].body["response_format"] == {"type": "json_object"}
    reply = ip.user_ns["r"]
    expected = {"echo": "Reply in JSON please", "turn": 1, "model": "gpt-4o-mini"}
    assert isinstance(reply, Reply) and reply.json == expected and reply.parsed == expected
    shown = [o.data for o in captured.outputs if "application/json" in o.data]
    assert len(shown) == 1 and shown[0]["application/json"] == expected
    assert shown[0]["text/markdown"] == f"```json\n{json.dumps(expected, indent=2)}\n```"
    assert "completion" in plain_outputs(captured)[-1]  # the footer follows the JSON


def test_live_json_reply_streams_as_a_json_block_and_ends_clean(ip, server):
    ip.run_line_magic("config", "ChatMagics.display_mode = 'live'")
    ip.run_line_magic("config", "ChatMagics.update_interval = 0")
    magics = ip.find_cell_magic("chat").__self__
    seen: list[str] = []
    real_feed = magics.session.run

    def spy(prompt, settings, view, **kwargs):
        inner_feed = view.inner.feed
        view.inner.feed = lambda delta: (seen.append(delta), inner_feed(delta))
        return real_feed(prompt, settings, view, **kwargs)

    magics.session.run = spy
    result, captured = run(ip, f"%%chat --json {JSON_MODEL}\nhi")
    assert result.error_in_exec is None
    assert seen[0].startswith("```json\n{")  # streamed inside a json fence
    assert [sorted(o.data) for o in captured.outputs] == [
        ["application/json", "text/markdown", "text/plain"],
        ["text/html", "text/plain"],
    ]


def test_schema_from_a_dict(ip, server):
    ip.user_ns["echo_schema"] = {
        "title": "Echo reply",
        "type": "object",
        "properties": {"echo": {"type": "string"}, "turn": {"type": "integer"}},
    }
    result, _ = run(ip, f"%%chat --schema echo_schema {JSON_MODEL} -o r\nhi")
    assert result.error_in_exec is None
    fmt = server.requests[-1].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"] == {"name": "Echo_reply", "schema": ip.user_ns["echo_schema"]}
    assert ip.user_ns["r"].parsed["turn"] == 1


def test_schema_from_a_pydantic_model_gives_an_instance(ip, server):
    pydantic = pytest.importorskip("pydantic")

    class Echo(pydantic.BaseModel):
        echo: str
        turn: int
        model: str = "unknown"

    ip.user_ns["Echo"] = Echo
    result, _ = run(ip, f"%%chat --schema Echo {JSON_MODEL} -o r\nhi there")
    assert result.error_in_exec is None
    spec = server.requests[-1].body["response_format"]["json_schema"]
    assert spec["name"] == "Echo" and spec["strict"] is True
    assert spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["required"] == ["echo", "turn", "model"]
    parsed = ip.user_ns["r"].parsed
    assert isinstance(parsed, Echo) and parsed == Echo(echo="hi there", turn=1, model="gpt-4o-mini")


def test_pydantic_schema_is_sent_without_defaults_in_strict_mode(ip, server):
    pydantic = pytest.importorskip("pydantic")
    import enum

    class Colour(str, enum.Enum):
        RED = "red"
        BLUE = "blue"

    class Settings(pydantic.BaseModel):
        default: str  # a property may be called "default"
        note: str | None = None
        colour: Colour = Colour.RED
        size: int = pydantic.Field(3, examples=[{"default": 1}])

    ip.user_ns["Settings"] = Settings
    result, _ = run(ip, "%%chat --schema Settings --dry-run -o body\nhi")
    assert result.error_in_exec is None
    schema = ip.user_ns["body"]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["default", "note", "colour", "size"]
    assert "default" in schema["properties"]  # the property stays
    assert schema["properties"]["size"]["examples"] == [{"default": 1}]  # data is kept as is
    text = json.dumps({k: v for k, v in schema.items()})
    assert '"default": null' not in text and '"default": "red"' not in text
    assert '"default": 3' not in text


def test_reply_that_does_not_fit_the_model_is_a_one_line_error_and_kept(ip, server):
    pydantic = pytest.importorskip("pydantic")

    class Person(pydantic.BaseModel):
        name: str
        age: int

    ip.user_ns["Person"] = Person
    result, _ = run(ip, f"%%chat --schema Person {JSON_MODEL} -o r\nwho?")
    assert isinstance(result.error_in_exec, NbChatError)
    assert "does not match Person" in str(result.error_in_exec)
    assert ip.user_ns["r"].json["echo"] == "who?"  # the reply is kept for a look
    result, _ = run(ip, "%%chat --json -o r2\nnot json at all")  # the echo is Markdown
    assert "not valid JSON" in str(result.error_in_exec)
    assert ip.user_ns["r2"].text.startswith("## Echo")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ("--schema nothing_here", "no such variable"),
        ("--schema number", "not a JSON Schema"),
        ("--json --schema spec", "not both"),
    ],
)
def test_bad_schemas_are_refused(ip, server, flags, words):
    ip.user_ns.update(number=3, spec={"type": "object"})
    result, _ = run(ip, f"%%chat {flags}\nhi")
    assert isinstance(result.error_in_exec, OptionError) and words in str(result.error_in_exec)
    assert not server.requests


def test_cell_help_documents_every_flag(ip):
    from nbchat.magics import ChatMagics, magic_parser

    _, captured = run(ip, "%%chat?")  # what a user sees (IPython's inspector)
    flags = [f for a in magic_parser(ChatMagics.chat)._actions for f in a.option_strings]
    assert len(flags) >= 30
    for flag in flags:
        assert flag in captured.stdout, flag
    assert "Send the cell to the chat model" in captured.stdout
