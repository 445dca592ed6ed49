"""End-to-end tests of Switchyard with the official Python SDKs (openai, anthropic).

Every endpoint is exercised against both models: `gpt-4o` is served only by a mock OpenAI
Chat Completions upstream and `claude-haiku-4-5` only by a mock Anthropic Messages upstream,
so each test covers the native path for one model and a translated path for the other.

The mock upstreams answer:
- without tools: a fixed greeting (GREETING below), streamed word by word;
- with tools, when the last message is not a tool result: one call get_weather({"city": "Paris"});
- with tools, when the last message is a tool result: "The tool said: <result>".
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

MODELS = ("gpt-4o", "claude-haiku-4-5")
GREETING = {
    "gpt-4o": "Hello from OpenAI mock",
    "claude-haiku-4-5": "Hello from Anthropic mock",
}
UNKNOWN_MODEL = "no-such-model"

QUESTION = "What is the weather in Paris?"
TOOL_RESULT = "sunny, 21C"
TOOL_ANSWER = f"The tool said: {TOOL_RESULT}"
TOOL_ARGUMENTS = {"city": "Paris"}
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "The city name"}},
    "required": ["city"],
}
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": CITY_SCHEMA,
        },
    }
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": CITY_SCHEMA,
    }
]
MESSAGES_TOOLS = [
    {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "input_schema": CITY_SCHEMA,
    }
]

both_models = pytest.mark.parametrize("model", MODELS)
streamed_or_not = pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])


def assert_positive_usage(prompt_tokens: Any, completion_tokens: Any) -> None:
    assert isinstance(prompt_tokens, int) and prompt_tokens >= 1, f"prompt tokens: {prompt_tokens!r}"
    assert isinstance(completion_tokens, int) and completion_tokens >= 1, f"completion tokens: {completion_tokens!r}"


# ---------------------------------------------------------------------------------------------
# POST /v1/chat/completions
# ---------------------------------------------------------------------------------------------


def chat_user_message() -> dict[str, Any]:
    return {"role": "user", "content": QUESTION}


def chat_tool_messages(call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
    """The conversation after the model asked for a tool: user, assistant tool call, tool result."""
    return [
        chat_user_message(),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT},
    ]


def collect_chat_stream(stream: Any) -> dict[str, Any]:
    """Assembles a streamed chat completion: text, tool calls (by index), finish reason, usage chunk."""
    text: list[str] = []
    tool_calls: dict[int, dict[str, str]] = {}
    finish_reasons: list[str] = []
    chunks = list(stream)
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
            for call in delta.tool_calls or []:
                slot = tool_calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    return {
        "chunks": chunks,
        "text": "".join(text),
        "tool_calls": [tool_calls[i] for i in sorted(tool_calls)],
        "finish_reasons": finish_reasons,
    }


@both_models
def test_chat_completion(openai_client: openai.OpenAI, model: str) -> None:
    completion = openai_client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello."},
        ],
    )

    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == GREETING[model]
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert_positive_usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)


@both_models
def test_chat_completion_stream(openai_client: openai.OpenAI, model: str) -> None:
    stream = openai_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    result = collect_chat_stream(stream)

    assert result["text"] == GREETING[model]
    assert result["finish_reasons"] == ["stop"]
    assert all(chunk.object == "chat.completion.chunk" for chunk in result["chunks"])
    last = result["chunks"][-1]
    assert last.usage is not None, "with include_usage the last chunk carries the usage"
    assert last.choices == []
    assert_positive_usage(last.usage.prompt_tokens, last.usage.completion_tokens)


@both_models
def test_chat_completion_stream_helper(openai_client: openai.OpenAI, model: str) -> None:
    deltas: list[str] = []
    with openai_client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        stream_options={"include_usage": True},
    ) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas.append(event.delta)
        completion = stream.get_final_completion()

    assert "".join(deltas) == GREETING[model]
    assert completion.choices[0].message.content == GREETING[model]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert_positive_usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)


@both_models
def test_chat_completion_tool_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    first = openai_client.chat.completions.create(model=model, messages=[chat_user_message()], tools=CHAT_TOOLS)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS
    assert first.usage is not None
    assert_positive_usage(first.usage.prompt_tokens, first.usage.completion_tokens)

    second = openai_client.chat.completions.create(
        model=model,
        messages=chat_tool_messages(call.id, call.function.name, call.function.arguments),
        tools=CHAT_TOOLS,
    )

    assert second.choices[0].message.content == TOOL_ANSWER
    assert second.choices[0].finish_reason == "stop"
    assert not second.choices[0].message.tool_calls


@both_models
def test_chat_completion_stream_tool_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    first = collect_chat_stream(
        openai_client.chat.completions.create(
            model=model, messages=[chat_user_message()], tools=CHAT_TOOLS, stream=True
        )
    )

    assert first["finish_reasons"] == ["tool_calls"]
    assert len(first["tool_calls"]) == 1
    call = first["tool_calls"][0]
    assert call["id"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == TOOL_ARGUMENTS

    second = collect_chat_stream(
        openai_client.chat.completions.create(
            model=model,
            messages=chat_tool_messages(call["id"], call["name"], call["arguments"]),
            tools=CHAT_TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert second["text"] == TOOL_ANSWER
    assert second["finish_reasons"] == ["stop"]
    assert second["tool_calls"] == []
    usage = second["chunks"][-1].usage
    assert usage is not None
    assert_positive_usage(usage.prompt_tokens, usage.completion_tokens)


# ---------------------------------------------------------------------------------------------
# POST /v1/responses
# ---------------------------------------------------------------------------------------------


def responses_user_message() -> dict[str, Any]:
    return {"role": "user", "content": QUESTION}


def responses_function_calls(output: list[Any]) -> list[Any]:
    return [item for item in output if item.type == "function_call"]


def responses_tool_input(call: Any) -> list[dict[str, Any]]:
    """The input after the model asked for a tool: user message, the function call, its output."""
    return [
        responses_user_message(),
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT},
    ]


def assert_weather_call(call: Any) -> None:
    assert call.name == "get_weather"
    assert call.call_id
    assert json.loads(call.arguments) == TOOL_ARGUMENTS


def collect_responses_stream(stream: Any) -> dict[str, Any]:
    """Reads a raw `responses.create(stream=True)` stream and checks the event envelope."""
    events = list(stream)
    types = [event.type for event in events]
    assert types, "the stream has no events"
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types

    sequence = [event.sequence_number for event in events]
    assert all(isinstance(n, int) for n in sequence), sequence
    assert sequence == sorted(set(sequence)), f"sequence_number must increase: {sequence}"

    created, completed = events[0].response, events[-1].response
    assert created.id and created.id == completed.id, "created and completed must describe the same response"
    assert completed.status == "completed"
    return {
        "events": events,
        "types": types,
        "text": "".join(event.delta for event in events if event.type == "response.output_text.delta"),
        "done_items": [event.item for event in events if event.type == "response.output_item.done"],
        "response": completed,
    }


@both_models
def test_responses_create(openai_client: openai.OpenAI, model: str) -> None:
    response = openai_client.responses.create(
        model=model,
        input="Say hello.",
        instructions="You are a helpful assistant.",
    )

    assert response.object == "response"
    assert response.id
    assert response.status == "completed"
    assert response.output_text == GREETING[model]
    assert response.usage is not None
    assert_positive_usage(response.usage.input_tokens, response.usage.output_tokens)


@both_models
def test_responses_create_stream(openai_client: openai.OpenAI, model: str) -> None:
    result = collect_responses_stream(
        openai_client.responses.create(
            model=model,
            input="Say hello.",
            instructions="You are a helpful assistant.",
            stream=True,
        )
    )

    assert "response.output_text.delta" in result["types"]
    assert result["text"] == GREETING[model]
    final = result["response"]
    assert final.output_text == GREETING[model]
    assert final.usage is not None
    assert_positive_usage(final.usage.input_tokens, final.usage.output_tokens)


@both_models
def test_responses_stream_helper(openai_client: openai.OpenAI, model: str) -> None:
    deltas: list[str] = []
    with openai_client.responses.stream(
        model=model,
        input="Say hello.",
        instructions="You are a helpful assistant.",
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
                assert event.snapshot.endswith(event.delta)
        final = stream.get_final_response()

    assert "".join(deltas) == GREETING[model]
    assert final.status == "completed"
    assert final.output_text == GREETING[model]
    assert final.usage is not None
    assert_positive_usage(final.usage.input_tokens, final.usage.output_tokens)


@both_models
def test_responses_tool_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    first = openai_client.responses.create(model=model, input=[responses_user_message()], tools=RESPONSES_TOOLS)

    assert first.status == "completed"
    calls = responses_function_calls(first.output)
    assert len(calls) == 1, first.output
    assert_weather_call(calls[0])

    second = openai_client.responses.create(
        model=model, input=responses_tool_input(calls[0]), tools=RESPONSES_TOOLS
    )

    assert second.status == "completed"
    assert second.output_text == TOOL_ANSWER
    assert responses_function_calls(second.output) == []
    assert second.usage is not None
    assert_positive_usage(second.usage.input_tokens, second.usage.output_tokens)


@both_models
def test_responses_create_stream_tool_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    first = collect_responses_stream(
        openai_client.responses.create(
            model=model, input=[responses_user_message()], tools=RESPONSES_TOOLS, stream=True
        )
    )

    streamed_calls = responses_function_calls(first["done_items"])
    assert len(streamed_calls) == 1, first["types"]
    assert_weather_call(streamed_calls[0])
    final_calls = responses_function_calls(first["response"].output)
    assert [c.call_id for c in final_calls] == [streamed_calls[0].call_id]

    second = collect_responses_stream(
        openai_client.responses.create(
            model=model, input=responses_tool_input(streamed_calls[0]), tools=RESPONSES_TOOLS, stream=True
        )
    )

    assert second["text"] == TOOL_ANSWER
    assert second["response"].output_text == TOOL_ANSWER


@both_models
def test_responses_stream_helper_tool_round_trip(openai_client: openai.OpenAI, model: str) -> None:
    with openai_client.responses.stream(
        model=model, input=[responses_user_message()], tools=RESPONSES_TOOLS
    ) as stream:
        first = stream.get_final_response()

    calls = responses_function_calls(first.output)
    assert len(calls) == 1, first.output
    assert_weather_call(calls[0])

    with openai_client.responses.stream(
        model=model, input=responses_tool_input(calls[0]), tools=RESPONSES_TOOLS
    ) as stream:
        second = stream.get_final_response()

    assert second.output_text == TOOL_ANSWER
    assert second.usage is not None
    assert_positive_usage(second.usage.input_tokens, second.usage.output_tokens)


# ---------------------------------------------------------------------------------------------
# POST /v1/messages
# ---------------------------------------------------------------------------------------------


def messages_user_message() -> dict[str, Any]:
    return {"role": "user", "content": QUESTION}


def tool_use_blocks(message: Any) -> list[Any]:
    return [block for block in message.content if block.type == "tool_use"]


def messages_tool_conversation(first: Any, tool_use_id: str) -> list[dict[str, Any]]:
    """The conversation after the model asked for a tool: user, the assistant's turn, the tool result."""
    return [
        messages_user_message(),
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": TOOL_RESULT}],
        },
    ]


def assert_weather_tool_use(message: Any) -> Any:
    assert message.stop_reason == "tool_use"
    blocks = tool_use_blocks(message)
    assert len(blocks) == 1, message.content
    block = blocks[0]
    assert block.id
    assert block.name == "get_weather"
    assert block.input == TOOL_ARGUMENTS
    return block


@both_models
def test_messages_create(anthropic_client: anthropic.Anthropic, model: str) -> None:
    message = anthropic_client.messages.create(
        model=model,
        max_tokens=256,
        system="You are a helpful assistant.",
        messages=[{"role": "user", "content": "Say hello."}],
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id
    assert message.content[0].type == "text"
    assert message.content[0].text == GREETING[model]
    assert message.stop_reason == "end_turn"
    assert_positive_usage(message.usage.input_tokens, message.usage.output_tokens)


@both_models
def test_messages_stream_helper(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=256,
        system="You are a helpful assistant.",
        messages=[{"role": "user", "content": "Say hello."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == GREETING[model]
    assert final.content[0].type == "text"
    assert final.content[0].text == GREETING[model]
    assert final.stop_reason == "end_turn"
    assert_positive_usage(final.usage.input_tokens, final.usage.output_tokens)


@both_models
def test_messages_create_stream(anthropic_client: anthropic.Anthropic, model: str) -> None:
    stream = anthropic_client.messages.create(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
    )
    events = list(stream)
    types = [event.type for event in events]

    assert types[0] == "message_start", types
    assert "content_block_start" in types
    assert "content_block_delta" in types
    assert "message_delta" in types
    assert types[-1] == "message_stop", types
    text = "".join(
        event.delta.text
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )
    assert text == GREETING[model]

    message_delta = next(event for event in events if event.type == "message_delta")
    assert message_delta.delta.stop_reason == "end_turn"
    # Usage on message_delta is cumulative; input tokens may be known only at the end.
    input_tokens = message_delta.usage.input_tokens
    if input_tokens is None:
        input_tokens = events[0].message.usage.input_tokens
    assert_positive_usage(input_tokens, message_delta.usage.output_tokens)


@both_models
def test_messages_tool_round_trip(anthropic_client: anthropic.Anthropic, model: str) -> None:
    first = anthropic_client.messages.create(
        model=model, max_tokens=256, messages=[messages_user_message()], tools=MESSAGES_TOOLS
    )
    block = assert_weather_tool_use(first)

    second = anthropic_client.messages.create(
        model=model,
        max_tokens=256,
        messages=messages_tool_conversation(first, block.id),
        tools=MESSAGES_TOOLS,
    )

    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == TOOL_ANSWER
    assert_positive_usage(second.usage.input_tokens, second.usage.output_tokens)


@both_models
def test_messages_stream_tool_round_trip(anthropic_client: anthropic.Anthropic, model: str) -> None:
    with anthropic_client.messages.stream(
        model=model, max_tokens=256, messages=[messages_user_message()], tools=MESSAGES_TOOLS
    ) as stream:
        first = stream.get_final_message()
    block = assert_weather_tool_use(first)
    assert_positive_usage(first.usage.input_tokens, first.usage.output_tokens)

    with anthropic_client.messages.stream(
        model=model,
        max_tokens=256,
        messages=messages_tool_conversation(first, block.id),
        tools=MESSAGES_TOOLS,
    ) as stream:
        second = stream.get_final_message()

    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == TOOL_ANSWER


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def call_chat(client: openai.OpenAI, model: str, stream: bool) -> None:
    result = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], stream=stream
    )
    if stream:
        list(result)


def call_responses(client: openai.OpenAI, model: str, stream: bool) -> None:
    result = client.responses.create(model=model, input="Say hello.", stream=stream)
    if stream:
        list(result)


def call_messages(client: anthropic.Anthropic, model: str, stream: bool) -> None:
    result = client.messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Say hello."}], stream=stream
    )
    if stream:
        list(result)


@streamed_or_not
def test_chat_wrong_key_is_401(openai_client_wrong_key: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        call_chat(openai_client_wrong_key, "gpt-4o", stream)
    assert info.value.status_code == 401


@streamed_or_not
def test_responses_wrong_key_is_401(openai_client_wrong_key: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        call_responses(openai_client_wrong_key, "gpt-4o", stream)
    assert info.value.status_code == 401


@streamed_or_not
def test_messages_wrong_key_is_401(anthropic_client_wrong_key: anthropic.Anthropic, stream: bool) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        call_messages(anthropic_client_wrong_key, "claude-haiku-4-5", stream)
    assert info.value.status_code == 401


def assert_openai_client_error(error: openai.APIStatusError) -> None:
    assert 400 <= error.status_code < 500, error.status_code
    # The SDK exposes the `error` object of an OpenAI error body as `.body`.
    assert isinstance(error.body, dict), error.body
    assert isinstance(error.body.get("message"), str) and error.body["message"], error.body


@streamed_or_not
def test_chat_unknown_model_is_client_error(openai_client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        call_chat(openai_client, UNKNOWN_MODEL, stream)
    assert_openai_client_error(info.value)


@streamed_or_not
def test_responses_unknown_model_is_client_error(openai_client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        call_responses(openai_client, UNKNOWN_MODEL, stream)
    assert_openai_client_error(info.value)


@streamed_or_not
def test_messages_unknown_model_is_client_error(anthropic_client: anthropic.Anthropic, stream: bool) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        call_messages(anthropic_client, UNKNOWN_MODEL, stream)

    error = info.value
    assert 400 <= error.status_code < 500, error.status_code
    # The SDK exposes the whole Anthropic error body: {"type": "error", "error": {"type", "message"}}.
    assert isinstance(error.body, dict), error.body
    assert error.body["type"] == "error", error.body
    assert isinstance(error.body["error"]["type"], str), error.body
    assert isinstance(error.body["error"].get("message"), str), error.body
