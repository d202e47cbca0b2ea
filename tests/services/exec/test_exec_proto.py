"""The sans-I/O exec protocol: messages, the hex vectors of docs/exec.md,
windows and credit, channel reuse, request limits (at and past each)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wirekit.errors import LocalProtocolError, RemoteProtocolError
from wirekit.proto import FrameConnection, MessageCodec, MessageReceived, Role
from wirekit.proto.exec import (
    EXEC_MESSAGES,
    ChannelAllocator,
    ExecExit,
    ExecLimits,
    ExecOpen,
    ReceiveWindow,
    SendCredit,
    check_open,
)
from wirekit.proto.frames import encode_hello
from wirekit.services.exec.server import split_allowed_command

EXEC_MD = Path(__file__).resolve().parents[3] / "docs" / "exec.md"
_BLOCK = re.compile(r"^```hex ([a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

VECTORS = {
    "exec-open-echo": (2, ExecOpen(argv=["echo", "hi"])),
    "exec-exit-0": (2, ExecExit(0)),
}


def _client() -> FrameConnection:
    client = FrameConnection(Role.CLIENT, codec=MessageCodec(EXEC_MESSAGES))
    client.data_to_send()
    client.receive_data(encode_hello(1 << 20, role=Role.SERVER))
    return client


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_doc_vectors_match_the_encoder(name: str) -> None:
    blocks = {n: bytes.fromhex("".join(b.split())) for n, b in _BLOCK.findall(EXEC_MD.read_text())}
    channel, message = VECTORS[name]
    client = _client()
    client.send_message(message, channel)
    assert client.data_to_send() == blocks[name]
    server = FrameConnection(Role.SERVER, codec=MessageCodec(EXEC_MESSAGES))
    server.receive_data(encode_hello(1 << 20))
    assert server.receive_data(blocks[name]) == [MessageReceived(channel, message)]


def test_every_doc_vector_is_checked() -> None:
    assert {n for n, _ in _BLOCK.findall(EXEC_MD.read_text())} == set(VECTORS)


def test_receive_window_accepts_up_to_the_credit_and_refuses_one_more() -> None:
    window = ReceiveWindow(4, 1000)
    window.receive(1000)  # at the limit
    with pytest.raises(RemoteProtocolError, match="1 bytes of DATA on channel 4 exceed"):
        window.receive(1)
    assert window.consume(249) == 249  # the peer has no credit left: grant at once
    assert window.consume(100) == 0  # a quarter of the window is not yet taken
    assert window.consume(150) == 250
    window.receive(499)
    with pytest.raises(RemoteProtocolError):
        window.receive(2)


def test_send_credit_is_taken_and_granted_and_capped() -> None:
    credit = SendCredit(10)
    credit.take(10)
    with pytest.raises(LocalProtocolError):
        credit.take(1)
    credit.grant(0xFFFFFFFF)
    credit.grant(0xFFFFFFFF)
    assert credit.credit == 0xFFFFFFFF


def test_channels_are_even_and_reused_after_release() -> None:
    channels = ChannelAllocator()
    first, second = channels.allocate(), channels.allocate()
    assert (first, second) == (2, 4)
    channels.release(first)
    assert channels.allocate() == 2
    for _ in range(32767 - 2):
        channels.allocate()
    with pytest.raises(LocalProtocolError, match="all 32767 command channels are in use"):
        channels.allocate()


LIMITS = ExecLimits(max_command_bytes=100, max_env_vars=3, max_env_bytes=40)


def test_command_line_at_the_limit_runs_and_one_byte_more_is_refused() -> None:
    assert check_open(ExecOpen(command="x" * 99), LIMITS) is None  # 99 + 1 = 100 bytes
    refused = check_open(ExecOpen(command="x" * 100), LIMITS)
    assert refused is not None and refused.code == "too-large"
    assert refused.reason == "command line of 101 bytes exceeds limit of 100 bytes"
    assert check_open(ExecOpen(argv=["a" * 49, "b" * 49]), LIMITS) is None
    assert check_open(ExecOpen(argv=["a" * 49, "b" * 50]), LIMITS) is not None


def test_environment_at_the_limits_runs_and_past_them_is_refused() -> None:
    three = {"A": "1", "B": "2", "C": "3"}
    assert check_open(ExecOpen(command="true", env=three), LIMITS) is None
    refused = check_open(ExecOpen(command="true", env={**three, "D": "4"}), LIMITS)
    assert refused is not None and "4 variables exceeds limit of 3" in refused.reason
    assert check_open(ExecOpen(command="true", env={"V": "x" * 37}), LIMITS) is None  # 40 bytes
    refused = check_open(ExecOpen(command="true", env={"V": "x" * 38}), LIMITS)
    assert refused is not None and refused.reason.endswith("41 bytes exceeds limit of 40 bytes")


@pytest.mark.parametrize(
    "request_",
    [
        ExecOpen(),
        ExecOpen(argv=["a"], command="b"),
        ExecOpen(argv=[]),
        ExecOpen(argv=["a\0b"]),
        ExecOpen(command="true", env={"A=B": "x"}),
    ],
)
def test_malformed_requests_are_refused(request_: ExecOpen) -> None:
    refused = check_open(request_)
    assert refused is not None and refused.code == "bad-request"


@pytest.mark.parametrize("command", ["ls; rm x", "ls | wc", "echo $HOME", "ls `pwd`", "ls *"])
def test_allow_mode_refuses_shell_metacharacters(command: str) -> None:
    refused = split_allowed_command(command)
    assert not isinstance(refused, list) and refused.code == "not-allowed"


def test_allow_mode_splits_quoted_words_without_a_shell() -> None:
    assert split_allowed_command("grep 'a b' file") == ["grep", "a b", "file"]
