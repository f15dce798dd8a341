# Example IPython configuration for nbchat: every setting, commented out.
#
# Copy the lines you want into your profile's ipython_config.py
# (`ipython locate profile` prints its folder; `ipython profile create` makes one).
# Every setting can also be changed at run time: %config ChatMagics.model = "gpt-4o"
# and listed with %config ChatMagics (the key is always shown masked).

c = get_config()  # noqa: F821  (IPython provides get_config in config files)

# --- Load nbchat in every IPython kernel and shell of this profile -------------
# (or run `python -m nbchat autoload on`, which does the same with a startup file)
# c.InteractiveShellApp.extensions = ["nbchat"]

# --- Who you are -----------------------------------------------------------------
# Best: leave api_key unset and export OPENAI_API_KEY in your shell, so the key
# is in neither your notebooks nor this file. If you must set it here, read it
# from somewhere private rather than writing it inline:
# import os
# c.ChatMagics.api_key = os.environ["MY_OPENAI_KEY"]
# c.ChatMagics.organization = "org-..."     # sent as OpenAI-Organization ($OPENAI_ORG_ID)
# c.ChatMagics.project = "proj_..."         # sent as OpenAI-Project ($OPENAI_PROJECT_ID)

# --- Which server and model ------------------------------------------------------
# c.ChatMagics.base_url = "https://api.openai.com/v1"   # default ($OPENAI_BASE_URL)
# c.ChatMagics.base_url = "http://localhost:11434/v1"   # Ollama
# c.ChatMagics.base_url = "http://localhost:8000/v1"    # vLLM
# c.ChatMagics.base_url = "http://localhost:1234/v1"    # LM Studio
# c.ChatMagics.base_url = "http://localhost:4000/v1"    # LiteLLM proxy
# c.ChatMagics.model = "gpt-4o-mini"
# c.ChatMagics.system_prompt = "You are a concise assistant for data analysis."

# --- Network ---------------------------------------------------------------------
# c.ChatMagics.timeout = 60.0        # seconds to wait for the server
# c.ChatMagics.max_retries = 2       # retries before the first token (429, 5xx, network)

# --- Display ---------------------------------------------------------------------
# c.ChatMagics.show_usage = True     # the footer: tokens, first token, latency, tok/s, cost
# c.ChatMagics.update_interval = 0.1 # seconds between display updates while streaming
# Replies are untrusted (prompt injection): images they link to are not fetched,
# so an image URL cannot carry your data away. True loads http(s) images.
# c.ChatMagics.load_remote_images = False
# c.ChatMagics.display_mode = "auto" # "live", "final" or "auto"

# --- Request fields sent with every cell (flags override them per cell) -----------
# Checked like the flags: temperature 0-2, top_p 0-1, penalties -2..2, integers.
# c.ChatMagics.temperature = 0.2
# c.ChatMagics.top_p = 1.0
# c.ChatMagics.frequency_penalty = 0.0
# c.ChatMagics.presence_penalty = 0.0
# c.ChatMagics.max_tokens = 1024     # sent as max_completion_tokens (OpenAI) or max_tokens
# c.ChatMagics.max_tokens_field = "auto"  # or "max_tokens" / "max_completion_tokens"
# c.ChatMagics.seed = 42
# c.ChatMagics.stop = ["###"]
# c.ChatMagics.store = False
# c.ChatMagics.user = "analyst-7"
# c.ChatMagics.reasoning_effort = "low"  # reasoning models: none, minimal, low ... max (--effort)
# c.ChatMagics.stream = True         # False: one request per cell, shown when complete
# c.ChatMagics.params = {"service_tier": "auto"}  # any other fields (not messages/model/stream)

# --- The exchange record (%chat log, %chat resume, %chat usage) ---------------------
# An SQLite file shared by all kernels; the API key is never stored in it.
# c.ChatMagics.record = True         # False: nothing is written
# c.ChatMagics.history_path = "~/notes/nbchat-history.sqlite"  # ($NBCHAT_HISTORY_PATH)

# --- Context from the notebook (--with, --error, --cells, %chat fix) -----------------
# Each attached value is summarised within this many tokens.
# c.ChatMagics.context_tokens = 2000

# --- Tools (--tools / -T: the model calls your functions) ----------------------------
# c.ChatMagics.tools = ["revenue"]   # offered in every %%chat cell
# c.ChatMagics.confirm_tools = True  # ask y/N before each call (False: never ask)
# c.ChatMagics.max_tool_rounds = 8   # rounds of calls per cell, then stop with one line
# c.ChatMagics.tool_result_tokens = 2000  # each result sent back is trimmed to this

# --- Cost estimates ----------------------------------------------------------------
# USD per 1M tokens: (input, cached input, output). Added to / overriding the
# built-in list prices; models in neither get no cost.
# c.ChatMagics.prices = {"my-finetune": (0.30, 0.15, 1.20)}
