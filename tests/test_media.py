"""--image and --audio: what the server receives for files, URLs, arrays, PIL images and figures.

The `server` fixture validates every body (with its content parts) against the
official CreateChatCompletionRequest schema.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import wave

import pytest

from nbchat.errors import OptionError
from nbchat.media import png_from_array

from .conftest import run

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def parts(ip, server, cell: str) -> list[dict]:
    result, captured = run(ip, cell)
    assert result.error_in_exec is None, captured.stdout
    content = server.requests[-1].body["messages"][-1]["content"]
    assert isinstance(content, list) and content[0]["type"] == "text"
    return content


def data_of(part: dict, mime: str = "image/png") -> bytes:
    url = part["image_url"]["url"]
    prefix = f"data:{mime};base64,"
    assert url.startswith(prefix), url[:40]
    return base64.b64decode(url[len(prefix) :])


def decoded(png: bytes):
    Image = pytest.importorskip("PIL.Image")
    return Image.open(io.BytesIO(png))


def test_image_file_becomes_a_data_url(ip, server, tmp_path):
    path = tmp_path / "dot.png"
    path.write_bytes(PNG_1PX)
    content = parts(ip, server, f"%%chat --image {path}\nwhat is this?")
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["type"] == "image_url" and data_of(content[1]) == PNG_1PX


def test_jpeg_file_path_from_a_variable_and_url_passthrough(ip, server, tmp_path):
    jpeg = tmp_path / "photo.data"  # the type comes from the bytes, not the name
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 32)
    ip.user_ns["photo_path"] = str(jpeg)
    url = "https://example.com/cat.png"
    content = parts(ip, server, f"%%chat --image photo_path --image {url}\ncompare")
    assert data_of(content[1], "image/jpeg").startswith(b"\xff\xd8\xff")
    assert content[2] == {"type": "image_url", "image_url": {"url": url}}


def test_numpy_arrays_are_encoded_as_png(ip, server):
    np = pytest.importorskip("numpy")
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[1, 2] = (255, 10, 20)
    ip.user_ns.update(rgb=rgb, gray=np.linspace(0, 1, 12).reshape(3, 4))
    content = parts(ip, server, "%%chat --image rgb --image gray\nlook")
    image = decoded(data_of(content[1]))
    assert image.size == (6, 4) and image.mode == "RGB"
    assert (np.asarray(image) == rgb).all()
    image = decoded(data_of(content[2]))
    assert image.mode == "L"
    assert np.asarray(image).tolist() == np.round(np.linspace(0, 255, 12)).reshape(3, 4).tolist()


def test_png_encoder_round_trips_rgba_and_bool(tmp_path):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    assert (np.asarray(decoded(png_from_array(rgba))) == rgba).all()
    mask = rng.random((3, 3)) > 0.5
    assert (np.asarray(decoded(png_from_array(mask))) == mask * 255).all()


def test_pil_image_and_matplotlib_figure(ip, server):
    Image = pytest.importorskip("PIL.Image")
    figure_module = pytest.importorskip("matplotlib.figure")
    fig = figure_module.Figure(figsize=(2, 1), dpi=50)
    ax = fig.add_subplot()
    ax.plot([0, 1], [1, 0])
    ip.user_ns.update(
        pil=Image.new("RGB", (8, 3), (0, 128, 255)), cmyk=Image.new("CMYK", (2, 2)), fig=fig, ax=ax
    )
    content = parts(ip, server, "%%chat --image pil --image cmyk --image fig --image ax\nthese")
    assert decoded(data_of(content[1])).getpixel((7, 2)) == (0, 128, 255)
    assert decoded(data_of(content[2])).size == (2, 2)
    figure_png = decoded(data_of(content[3]))
    assert figure_png.format == "PNG" and all(20 < side < 150 for side in figure_png.size)
    assert data_of(content[4]) == data_of(content[3])  # an Axes sends its figure


def wav_bytes(seconds: float = 0.05, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (
            int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate))
        )
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def test_audio_from_a_wav_file_and_from_an_audio_object(ip, server, tmp_path):
    data = wav_bytes()
    (tmp_path / "tone.wav").write_bytes(data)
    from IPython.display import Audio

    ip.user_ns["clip"] = Audio(data=data)
    content = parts(ip, server, f"%%chat --audio {tmp_path / 'tone.wav'} --audio clip\ntranscribe")
    assert content[1] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"},
    }
    assert content[2]["input_audio"]["format"] == "wav"
    assert base64.b64decode(content[2]["input_audio"]["data"]).startswith(b"RIFF")


def test_mp3_is_recognised_by_its_bytes(ip, server, tmp_path):
    (tmp_path / "a.mp3").write_bytes(b"ID3\x04\x00" + b"\x00" * 64)
    content = parts(ip, server, f"%%chat --audio {tmp_path / 'a.mp3'}\nhi")
    assert content[1]["input_audio"]["format"] == "mp3"


def test_images_stay_in_the_conversation_and_history_mentions_them(ip, server, tmp_path):
    (tmp_path / "dot.png").write_bytes(PNG_1PX)
    run(ip, f"%%chat --image {tmp_path / 'dot.png'}\nfirst")
    run(ip, "%%chat\nsecond")
    messages = server.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][1]["type"] == "image_url"
    _, captured = run(ip, "%chat history")
    assert "(1 image)" in captured.outputs[0].data["text/markdown"]


def test_dry_run_shortens_base64_but_keeps_it_in_the_object(ip, server, tmp_path):
    np = pytest.importorskip("numpy")
    ip.user_ns["noise"] = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result, captured = run(ip, "%%chat --dry-run -o body --image noise\nhi")
    assert result.error_in_exec is None and not server.requests
    url = ip.user_ns["body"]["messages"][-1]["content"][1]["image_url"]["url"]
    assert len(url) > 10_000 and url not in captured.stdout
    assert f"({len(url):,} characters" in captured.stdout


@pytest.mark.parametrize(
    ("flag", "setup", "words"),
    [
        ("--image missing.png", None, "no such file"),
        ("--image notes", b"just some text", "not a PNG, JPEG, WebP or GIF"),
        ("--image number", None, "cannot send an int as an image"),
        ("--image sound", None, "cannot send an Audio as an image"),
        ("--image flat", None, "not an image"),
        ("--image wide", None, "integers 0-255 or floats 0-1"),
        ("--audio missing.wav", None, "no such file"),
        ("--audio notes", b"just some text", "not wav or mp3"),
        ("--audio number", None, "cannot send an int as audio"),
    ],
)
def test_bad_media_are_refused_before_sending(
    ip, server, tmp_path, monkeypatch, flag, setup, words
):
    np = pytest.importorskip("numpy")
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / "notes").write_bytes(setup)
    from IPython.display import Audio

    ip.user_ns.update(number=3, flat=np.zeros(5), wide=np.full((2, 2), 300))
    ip.user_ns["sound"] = Audio(data=b"ID3\x00\x00")
    result, captured = run(ip, f"%%chat {flag}\nhi")
    assert isinstance(result.error_in_exec, OptionError)
    assert words in str(result.error_in_exec)
    assert not server.requests
    assert len(captured.stdout.strip().splitlines()) <= 2
