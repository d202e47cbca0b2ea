"""The IRC line codec: parsing, formatting, splitting, sanitizing, names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirekit.proto.irc import (
    IrcMessage,
    IrcParseError,
    LineOverflow,
    LineSplitter,
    casefold_irc,
    format_message,
    parse_line,
    sanitize_text,
    valid_channel,
    valid_nick,
)

# --- parsing ---------------------------------------------------------------

GOLDEN = [
    (
        b":nick!user@host PRIVMSG #chan :hello world",
        IrcMessage("PRIVMSG", ("#chan", "hello world"), "nick!user@host"),
    ),
    (b"PING :irc.example", IrcMessage("PING", ("irc.example",))),
    (b"CAP LS 302", IrcMessage("CAP", ("LS", "302"))),
    (b"MODE #chan b", IrcMessage("MODE", ("#chan", "b"))),
    (b"USER guest 0 * :Real Name", IrcMessage("USER", ("guest", "0", "*", "Real Name"))),
    (b":server 001 alice :Welcome", IrcMessage("001", ("alice", "Welcome"), "server")),
]


@pytest.mark.parametrize(("line", "expected"), GOLDEN)
def test_golden_parse(line: bytes, expected: IrcMessage) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(("line", "expected"), GOLDEN)
def test_golden_format(line: bytes, expected: IrcMessage) -> None:
    # A one-word last parameter needs no colon, so those lines come out without one.
    unneeded = {
        b"PING :irc.example": b"PING irc.example",
        b":server 001 alice :Welcome": b":server 001 alice Welcome",
    }
    want = unneeded.get(line, line)
    assert format_message(expected) == want + b"\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"privmsg #a :x", IrcMessage("PRIVMSG", ("#a", "x"))),
        (b"@time=2024;id=1 :n PRIVMSG #a :hi", IrcMessage("PRIVMSG", ("#a", "hi"), "n")),
        (b"PRIVMSG  #a   :  spaced  ", IrcMessage("PRIVMSG", ("#a", "  spaced  "))),
        (b"TOPIC #a :", IrcMessage("TOPIC", ("#a", ""))),
        (b"QUIT", IrcMessage("QUIT")),
        (b"NICK bob ", IrcMessage("NICK", ("bob",))),
        (b"PRIVMSG #a :caf\xe9", IrcMessage("PRIVMSG", ("#a", "caf\ufffd"))),
    ],
)
def test_parse_variants(line: bytes, expected: IrcMessage) -> None:
    assert parse_line(line) == expected


def test_fifteen_params_ok_sixteen_refused() -> None:
    assert len(parse_line(b"X " + b"p " * 14 + b":last word").params) == 15
    assert len(parse_line(b"X " + b"p " * 15).params) == 15
    with pytest.raises(IrcParseError, match="more than 15"):
        parse_line(b"X " + b"p " * 15 + b"q")
    with pytest.raises(IrcParseError, match="more than 15"):
        parse_line(b"X " + b"p " * 15 + b":trailing")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"@tags", "empty"),
        (b":prefix", "missing command"),
        (b": PING", "empty prefix"),
        (b"PR1VMSG #a", "bad command"),
        (b"01 x", "bad command"),
        (b"0001 x", "bad command"),
        (b"PRIV\xc3\xa9 x", "bad command"),
        (b"PRIVMSG #a :a\0b", "NUL"),
        (b"PRIVMSG #a :a\rb", "CR or LF"),
    ],
)
def test_parse_errors(line: bytes, reason: str) -> None:
    with pytest.raises(IrcParseError, match=reason):
        parse_line(line)
    assert issubclass(IrcParseError, ValueError)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    try:
        msg = parse_line(data)
    except IrcParseError:
        return
    assert len(msg.params) <= 15


# --- formatting ------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=20
)
_word = _text.filter(lambda s: s != "" and " " not in s and not s.startswith(":"))
_command = st.one_of(
    st.from_regex(r"[A-Z]{1,10}", fullmatch=True), st.from_regex(r"[0-9]{3}", fullmatch=True)
)
_prefix = st.none() | _text.filter(lambda s: s != "" and " " not in s)


@st.composite
def messages(draw: st.DrawFn) -> IrcMessage:
    middles = draw(st.lists(_word, max_size=14))
    trailing = draw(st.lists(_text, max_size=1))
    return IrcMessage(draw(_command), (*middles, *trailing), draw(_prefix))


@given(messages())
def test_format_parse_round_trip(msg: IrcMessage) -> None:
    line = format_message(msg)
    assert line.endswith(b"\r\n") and len(line) <= 512
    assert parse_line(line[:-2]) == msg


@pytest.mark.parametrize(
    "msg",
    [
        IrcMessage("PRIVMSG", ("#a", "x\r\nQUIT")),
        IrcMessage("PRIVMSG", ("#a", "x\nQUIT")),
        IrcMessage("PRIVMSG", ("#a", "x\0")),
        IrcMessage("PRIVMSG", ("#a b", "x")),
        IrcMessage("PRIVMSG", ("", "x")),
        IrcMessage("PRIVMSG", (":a", "x")),
        IrcMessage("PRIV MSG", ("x",)),
        IrcMessage("", ("x",)),
        IrcMessage("12", ()),
        IrcMessage("X", ("p",) * 16),
        IrcMessage("X", (), "has space"),
        IrcMessage("X", (), ""),
        IrcMessage("X", (), "p" * 600),
    ],
)
def test_format_refusals(msg: IrcMessage) -> None:
    with pytest.raises(ValueError):
        format_message(msg)


@pytest.mark.parametrize("param", ["", "two words", ":colon", " lead"])
def test_last_param_gets_colon(param: str) -> None:
    assert format_message(IrcMessage("TOPIC", ("#a", param))) == f"TOPIC #a :{param}\r\n".encode()


@pytest.mark.parametrize("filler", ["a", "é", "€", "😀"])
def test_truncation_on_character_boundary(filler: str) -> None:
    msg = IrcMessage("PRIVMSG", ("#chan", filler * 600), "n!u@h")
    line = format_message(msg)
    assert line.endswith(b"\r\n")
    assert 512 - 4 < len(line) <= 512
    text = line[:-2].decode("utf-8")  # strict: no character was cut in half
    back = parse_line(line[:-2])
    assert back.params[1] == filler * len(back.params[1]) and text.endswith(filler)


# --- line splitting --------------------------------------------------------


def _reference_lines(data: bytes) -> list[bytes]:
    *complete, _partial = data.split(b"\n")
    return [line.removesuffix(b"\r") for line in complete if line.removesuffix(b"\r")]


@given(
    st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"\r\n", b"\r"]), max_size=30),
    st.lists(st.integers(0, 50), max_size=30),
)
def test_splitter_any_chunking(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    splitter = LineSplitter()
    got: list[bytes | LineOverflow] = []
    pos = 0
    for size in cuts:
        got += splitter.feed(data[pos : pos + size])
        pos += size
    got += splitter.feed(data[pos:])
    assert got == _reference_lines(data)


@given(st.binary(max_size=200), st.lists(st.integers(1, 30), max_size=40))
def test_splitter_chunking_invariant_with_overflow(data: bytes, cuts: list[int]) -> None:
    whole = LineSplitter(max_line=16).feed(data)
    splitter = LineSplitter(max_line=16)
    got: list[bytes | LineOverflow] = []
    pos = 0
    for size in cuts:
        got += splitter.feed(data[pos : pos + size])
        assert splitter.buffered < 16
        pos += size
    got += splitter.feed(data[pos:])
    assert got == whole


def test_splitter_megabyte_line_bounded_and_reported_once() -> None:
    splitter = LineSplitter()
    got: list[bytes | LineOverflow] = splitter.feed(b"NICK a\r\nPRIVMSG #a :")
    chunk = b"x" * 4096
    for _ in range(256):  # 1 MiB without a newline
        got += splitter.feed(chunk)
        assert splitter.buffered <= 512
    got += splitter.feed(b"tail\r\nPRIVMSG #a :next line\r\nPART")
    assert got == [b"NICK a", LineOverflow(512), b"PRIVMSG #a :next line"]
    assert splitter.feed(b" #a\n") == [b"PART #a"]


def test_splitter_limit_is_512_with_crlf() -> None:
    ok = b"P" * 510
    assert LineSplitter().feed(ok + b"\r\n") == [ok]
    assert LineSplitter().feed(b"P" * 511 + b"\n") == [b"P" * 511]
    assert LineSplitter().feed(b"P" * 511 + b"\r\nX\n") == [LineOverflow(512), b"X"]
    assert LineSplitter().feed(b"\r\n\n\r\n") == []


# --- sanitizing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("ding\x07", "ding"),
        ("abc\u202edcba", "abcdcba"),
        ("x\u2066y\u2069z", "xyz"),
        ("keep \u200d\u00e9", "keep \u200d\u00e9"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]0;title\x1b\\after", "after"),
        ("\x1b]0;unterminated", ""),
        ("\x1b[2J\x1b[H\x1b[?25lwipe", "wipe"),
        ("\x1bcreset", "reset"),
        ("\x9b31mc1", "31mc1"),
        ("\x02bold\x02 \x1fu\x1f \x1di\x1d \x16r\x16\x0f", "bold u i r"),
        ("\x0304red\x03 \x0312,01blue\x03 \x03,x", "red blue ,x"),
        ("a\tb\r\nc\x7fd", "a bcd"),
        ("plain ünïcode 😀", "plain ünïcode 😀"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_text(raw) == clean


@given(st.text())
def test_sanitize_leaves_no_controls(text: str) -> None:
    clean = sanitize_text(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in clean)
    assert sanitize_text(clean) == clean


# --- names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nick", "ok"),
    [
        ("alice", True),
        ("[bot]", True),
        ("`x_y-z|", True),
        ("a" * 30, True),
        ("a" * 31, False),
        ("", False),
        ("1abc", False),
        ("-abc", False),
        ("a b", False),
        ("a,b", False),
        ("é", False),
        ("nick\n", False),
    ],
)
def test_valid_nick(nick: str, ok: bool) -> None:
    assert valid_nick(nick) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("#chan", True),
        ("#a", True),
        ("#" + "c" * 49, True),
        ("#" + "c" * 50, False),
        ("#", False),
        ("chan", False),
        ("#a b", False),
        ("#a,b", False),
        ("#a:b", False),
        ("#a\x07", False),
        ("#a\0", False),
        ("#a\r", False),
        ("#a\n", False),
        ("#a\x1b[2J", False),
        ("#a\x9b2J", False),
        ("#a\x7f", False),
        ("#ünï", True),
    ],
)
def test_valid_channel(name: str, ok: bool) -> None:
    assert valid_channel(name) is ok


@pytest.mark.parametrize(
    ("a", "b"),
    [("Alice", "alice"), ("[Bot]", "{bot}"), ("a\\b", "A|B"), ("x~", "X^"), ("#Chan", "#chan")],
)
def test_casefold_equivalent(a: str, b: str) -> None:
    assert casefold_irc(a) == casefold_irc(b)


def test_casefold_is_ascii_only() -> None:
    assert casefold_irc("ÄB") == "Äb"
    assert casefold_irc("Alice") != casefold_irc("Alicf")
