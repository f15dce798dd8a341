"""A tiny random llama model in GGUF, written by the tests themselves (no download).

Two layers, hidden size 64, a SentencePiece-style vocabulary of about 380 pieces
with byte fallback (`<0x00>`..`<0xFF>`) and a ChatML chat template. The weights
are random (a fixed seed), so it writes word salad of the pieces below: words,
Markdown and HTML-ish fragments and multi-byte characters. One hidden dimension
is kept large and the output layer reads it to favour whole pieces over bytes
and over the end token, so replies run until `max_tokens` and stay valid UTF-8
unless a request pushes a byte token up with `logit_bias` (`BYTE_FF`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN = 64
LAYERS = 2
HEADS = 4
FFN = 128
CONTEXT = 2048

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
_TEXT = (
    "the and of to a in is it that for on with as was at by an be this from or"
    " model server token stream reply cell notebook python chat local tiny random"
    " llama byte piece markdown table list code data value result answer question"
)
WORDS = _TEXT.split()
PIECES = [
    *(f"\u2581{w}" for w in WORDS),
    *WORDS,
    # Markdown
    "\u2581#",
    "\u2581##",
    "**",
    "\u2581*",
    "_",
    "`",
    "```",
    "\u2581-",
    "\u2581|",
    "|",
    "\u2581>",
    "[",
    "](",
    ")",
    "\u25811.",
    "---",
    "$",
    "\\(",
    # HTML-ish (must never reach the browser as HTML)
    "<b>",
    "</b>",
    "<script>",
    "</script>",
    "<img",
    "\u2581src=x",
    "\u2581onerror=",
    "&amp;",
    "&lt;",
    "<!--",
    "-->",
    "<div>",
    "</div>",
    '"',
    "'",
    "=",
    # multi-byte characters
    "\u2581é",
    "ü",
    "ß",
    "日本",
    "語",
    "中文",
    "🙂",
    "🚀",
    "→",
    "€",
    "\u2581\u03a9\u03bc\u03ad\u03b3\u03b1",
    "ñ",
    # punctuation and whitespace
    ".",
    ",",
    ":",
    ";",
    "!",
    "?",
    "\u2581",
    "\u2581\u2581",
]
BYTES = [f"<0x{b:02X}>" for b in range(256)]
#: The id of the byte token 0xFF: never valid in UTF-8.
BYTE_FF = len(SPECIAL) + 255
IM_END = SPECIAL.index("<|im_end|>")


def write_model(path: Path, seed: int = 19) -> Path:
    """Write the model to `path` (about 0.4 MB; well under a second)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens = [*SPECIAL, *BYTES, *PIECES]
    types = (
        [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
        + [gguf.TokenType.CONTROL] * 2
        + [gguf.TokenType.BYTE] * 256
        + [gguf.TokenType.NORMAL] * len(PIECES)
    )
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("nbchat-tiny-random")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(SPECIAL + BYTES) + [-float(i) for i in range(len(PIECES))])
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(IM_END)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embed = rand(vocab, HIDDEN)
    embed[:, 0] = 8.0  # a steady direction the output layer reads (see the docstring)
    output = rand(vocab, HIDDEN, scale=1.0)
    output[:, 0] = -1.0  # specials and bytes: far down
    output[len(SPECIAL) + 256 :, 0] = 1.0  # whole pieces: up
    writer.add_tensor("token_embd.weight", embed)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.add_tensor("output.weight", output)
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", rand(HIDDEN, HIDDEN, scale=0.05))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(FFN, HIDDEN, scale=0.05))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(FFN, HIDDEN, scale=0.05))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(HIDDEN, FFN, scale=0.05))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
