"""Switchyard with the official OpenAI Python SDK: unchanged code, new base_url.

    pip install openai
    python3 examples/openai_sdk.py            # against the demo gateway on :4000
"""
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("SWITCHYARD_URL", "http://127.0.0.1:4000/v1"),
    api_key=os.environ.get("SWITCHYARD_KEY", "sk-switchyard-demo"),
)

# A pinned model with a fallback; Switchyard picks the provider and fails over.
completion = client.chat.completions.create(
    model="claude-haiku-4-5",
    messages=[{"role": "user", "content": "Say hello in five words."}],
    extra_body={"routing": {"models": ["gpt-5-mini"]}},
)
print(completion.choices[0].message.content)
info = completion.model_extra["switchyard"]
print(f"served by {info['provider']}/{info['model']} after {info['attempts']} attempt(s), ${info['cost_usd']:.6f}")

# Streaming works the same way.
stream = client.chat.completions.create(
    model="claude-haiku-4-5",
    messages=[{"role": "user", "content": "Stream a short greeting."}],
    stream=True,
)
print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
