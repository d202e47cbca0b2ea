"""The chat client's state and line editor, without sockets or a terminal.

Bytes a server would send go in; the lines to show and the exact bytes the
client queues come out.
"""

from __future__ import annotations

import pytest

from wirekit.proto.irc import MAX_LINE, parse_line
from wirekit.services.chat.client import (
    MAX_INCOMING_LINE,
    MAX_NICK_ATTEMPTS,
    ChatClient,
    display,
    room_name,
    text_budget,
)
from wirekit.services.chat.terminal import LineEditor, text_width

WELCOME = b":irc.test 001 alice :Welcome to the test network alice\r\n"


def sent(client: ChatClient) -> list[bytes]:
    return client.data_to_send().splitlines()


def registered(nick: str = "alice", room: str | None = None) -> ChatClient:
    client = ChatClient(nick, room)
    client.start()
    client.receive_data(WELCOME.replace(b"alice", nick.encode()))
    client.data_to_send()
    return client


def joined(room: str = "#lobby") -> ChatClient:
    client = registered()
    client.receive_data(f":alice!u@h JOIN {room}\r\n".encode())
    return client


# -- registration --------------------------------------------------------------------


def test_start_sends_nick_and_user_then_join_after_welcome() -> None:
    client = ChatClient("alice", "lobby")
    client.start()
    assert sent(client) == [b"NICK alice", b"USER wirekit 0 * :wirekit chat"]
    assert client.prompt == "[connecting] alice> "
    shown = client.receive_data(WELCOME)
    assert shown == ["- Welcome to the test network alice"]
    assert client.registered
    assert sent(client) == [b"JOIN #lobby"]


def test_password_goes_first() -> None:
    client = ChatClient("alice", password="s3cret")
    client.start()
    assert sent(client)[0] == b"PASS s3cret"


def test_ping_is_answered_with_the_same_token_even_before_registration() -> None:
    client = ChatClient("alice")
    client.start()
    client.data_to_send()
    assert client.receive_data(b"PING :abc def\r\n") == []
    assert sent(client) == [b"PONG :abc def"]


def test_nick_in_use_before_registration_adds_a_suffix() -> None:
    client = ChatClient("alice")
    client.start()
    client.data_to_send()
    shown = client.receive_data(b":irc 433 * alice :Nickname already in use\r\n")
    assert sent(client) == [b"NICK alice_"]
    assert shown == ["- Nickname already in use; trying alice_"]
    client.receive_data(b":irc 433 * alice_ :Nickname already in use\r\n")
    assert sent(client) == [b"NICK alice2"]
    client.receive_data(b":irc 001 alice2 :Welcome\r\n")
    assert client.nick == "alice2" and client.prompt == "[no room] alice2> "


def test_suffixed_nick_keeps_to_nine_characters() -> None:
    client = ChatClient("abcdefghi")
    client.start()
    client.data_to_send()
    client.receive_data(b":irc 433 * abcdefghi :in use\r\n")
    assert sent(client) == [b"NICK abcdefgh_"]


def test_nick_search_gives_up_after_the_limit() -> None:
    client = ChatClient("alice")
    client.start()
    for _ in range(MAX_NICK_ATTEMPTS):
        client.receive_data(b":irc 433 * x :in use\r\n")
        assert not client.finished
    shown = client.receive_data(b":irc 433 * x :in use\r\n")
    assert client.finished
    assert shown == [f"! no free nick after {MAX_NICK_ATTEMPTS} attempts: in use"]


def test_nick_in_use_after_registration_is_only_reported() -> None:
    client = registered()
    client.user_input("/nick bob")
    assert sent(client) == [b"NICK bob"]
    shown = client.receive_data(b":irc 433 alice bob :Nickname is already in use\r\n")
    assert shown == ["! bob: Nickname is already in use"]
    assert client.nick == "alice" and client.data_to_send() == b""


def test_typed_lines_wait_for_registration_then_go_in_order() -> None:
    client = ChatClient("alice")
    client.start()
    client.data_to_send()
    assert client.user_input("/join #x") == []
    assert client.user_input("hello") == []
    assert client.data_to_send() == b"" and not client.idle
    shown = client.receive_data(WELCOME)
    assert sent(client) == [b"JOIN #x", b"PRIVMSG #x hello"]
    assert shown[-1] == "[#x] <alice> hello"
    assert client.idle


# -- typed commands ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "wire"),
    [
        ("/join other", [b"JOIN #other"]),
        ("/join #secret key", [b"JOIN #secret key"]),
        ("/part", [b"PART #lobby"]),
        ("/part bye now", [b"PART #lobby :bye now"]),
        ("/part #other", [b"PART #other"]),
        ("/nick bob", [b"NICK bob"]),
        ("/msg bob hi there", [b"PRIVMSG bob :hi there"]),
        ("/me waves", [b"PRIVMSG #lobby :\x01ACTION waves\x01"]),
        ("/who", [b"NAMES #lobby"]),
        ("/who #other", [b"NAMES #other"]),
        ("/who bob", [b"WHOIS bob"]),
        ("/rooms", [b"LIST"]),
        ("/topic", [b"TOPIC #lobby"]),
        ("/topic new topic", [b"TOPIC #lobby :new topic"]),
        ("/history", [b"HISTORY #lobby"]),
        ("/history 20", [b"HISTORY #lobby 20"]),
        ("/raw MODE #lobby +m", [b"MODE #lobby +m"]),
        ("/quit", [b"QUIT leaving"]),
        ("/QUIT gone fishing", [b"QUIT :gone fishing"]),
        ("hello world", [b"PRIVMSG #lobby :hello world"]),
        ("//etc/passwd is a path", [b"PRIVMSG #lobby :/etc/passwd is a path"]),
    ],
)
def test_commands_map_onto_irc(typed: str, wire: list[bytes]) -> None:
    client = joined()
    client.user_input(typed)
    assert sent(client) == wire


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("/join", "! usage: /join #room"),
        ("/msg bob", "! usage: /msg NICK text"),
        ("/frobnicate", "! unknown command /frobnicate (try /help)"),
        ("/history lots", "! usage: /history [N]"),
        ("/raw", "! usage: /raw LINE"),
    ],
)
def test_bad_commands_say_why_and_send_nothing(typed: str, error: str) -> None:
    client = joined()
    assert client.user_input(typed) == [error]
    assert client.data_to_send() == b""


def test_commands_that_need_a_room_say_so_when_there_is_none() -> None:
    client = registered()
    assert client.user_input("hello") == [
        "! you are in no room: /join #room first (or /msg NICK text)"
    ]
    assert client.user_input("/me waves") == ["! /me needs a room: /join #room first"]
    assert client.user_input("/topic") == ["! /topic needs a room: /join #room first"]
    assert client.data_to_send() == b""


def test_help_lists_every_command() -> None:
    shown = "\n".join(registered().user_input("/help"))
    names = ("join", "part", "nick", "msg", "me", "who", "rooms", "topic", "history", "quit")
    for name in (*names, "help"):
        assert f"/{name}" in shown


def test_own_messages_are_shown_since_servers_do_not_echo_them() -> None:
    client = joined()
    assert client.user_input("hi") == ["[#lobby] <alice> hi"]
    assert client.user_input("/msg bob psst") == ["[to bob] <alice> psst"]
    assert client.user_input("/me waves") == ["[#lobby] * alice waves"]


def test_long_text_is_split_into_lines_that_fit_and_nothing_is_lost() -> None:
    client = joined()
    text = "é" * 700  # 1400 bytes, two bytes per character
    client.user_input(text)
    lines = sent(client)
    assert len(lines) == 4
    pieces = [parse_line(line).params[1] for line in lines]
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= text_budget("alice", "#lobby") for p in pieces)
    # Relayed with the longest prefix a server would add, each still fits in 512 bytes.
    prefix = f":alice!{'u' * 10}@{'h' * 63} ".encode()
    assert all(len(prefix + line) + 2 <= MAX_LINE for line in lines)
    assert max(len(prefix + line) + 2 for line in lines) >= MAX_LINE - 1


def test_typed_control_characters_are_not_sent() -> None:
    client = joined()
    client.user_input("a\x1b[2Jb\x07c\x00d\te")
    assert sent(client) == [b"PRIVMSG #lobby :a[2Jbcd e"]


def test_join_switches_to_an_already_joined_room_without_asking() -> None:
    client = joined("#a")
    client.receive_data(b":alice!u@h JOIN #b\r\n")
    assert client.room == "#b"
    assert client.user_input("/join #A") == ["* now talking in #A"]
    assert client.data_to_send() == b""
    client.user_input("here")
    assert sent(client) == [b"PRIVMSG #A here"]


def test_quit_marks_quitting_and_errors_after_it_are_the_goodbye() -> None:
    client = joined()
    client.user_input("/quit")
    assert client.quitting and not client.finished
    shown = client.receive_data(b"ERROR :Closing connection\r\n")
    assert shown == ["- closing: Closing connection"]
    assert client.finished
    assert client.receive_eof() == []


# -- incoming events ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b":bob!b@h PRIVMSG #lobby :hi all", "[#lobby] <bob> hi all"),
        (b":bob!b@h PRIVMSG alice :psst", "[private] <bob> psst"),
        (b":bob!b@h PRIVMSG #lobby :\x01ACTION waves\x01", "[#lobby] * bob waves"),
        (b":bob!b@h PRIVMSG alice :\x01VERSION\x01", "[private] (bob sent a CTCP VERSION)"),
        (b":bob!b@h NOTICE #lobby :note", "[#lobby] -bob- note"),
        (b":irc.test NOTICE alice :server says", "-irc.test- server says"),
        (b":bob!b@h JOIN #lobby", "[#lobby] * bob joined"),
        (b":bob!b@h JOIN :#lobby", "[#lobby] * bob joined"),
        (b":bob!b@h PART #lobby :bye", "[#lobby] * bob left (bye)"),
        (b":bob!b@h QUIT :Quit: gone", "* bob quit (Quit: gone)"),
        (b":bob!b@h NICK :robert", "* bob is now robert"),
        (b":bob!b@h TOPIC #lobby :new", "[#lobby] * bob set the topic: new"),
        (b":op!o@h KICK #lobby bob :spam", "[#lobby] * op kicked bob (spam)"),
        (b":irc 332 alice #lobby :the topic", "[#lobby] topic: the topic"),
        (b":irc 331 alice #lobby :No topic is set", "[#lobby] no topic"),
        (b":irc 322 alice #lobby 3 :chat here", "  #lobby (3 here)  chat here"),
        (b":irc 401 alice bob :No such nick/channel", "! bob No such nick/channel"),
        (b":irc 372 alice :- motd line", "- - motd line"),
        (
            b":irc 421 alice HISTORY :Unknown command",
            "! this server does not answer /history (some show a room's last messages on /join)",
        ),
        (b":irc 421 alice FOO :Unknown command", "! FOO Unknown command"),
        (
            b"ERROR :Closing link (flood)",
            "! the server closed the connection: Closing link (flood)",
        ),
    ],
)
def test_incoming_lines_are_shown(line: bytes, shown: str) -> None:
    client = joined()
    assert client.receive_data(line + b"\r\n") == [shown]


def test_names_are_gathered_until_the_end_of_the_list() -> None:
    client = joined()
    assert client.receive_data(b":irc 353 alice = #lobby :@alice bob\r\n") == []
    assert client.receive_data(b":irc 353 alice = #lobby :carol\r\n") == []
    shown = client.receive_data(b":irc 366 alice #lobby :End of NAMES list\r\n")
    assert shown == ["[#lobby] 3 here: @alice bob carol"]


def test_our_own_join_part_kick_and_nick_change_the_status() -> None:
    client = registered()
    assert client.receive_data(b":alice!u@h JOIN #a\r\n") == ["* you joined #a"]
    client.receive_data(b":alice!u@h JOIN #b\r\n")
    assert client.prompt == "[#b] alice> " and client.rooms == ["#a", "#b"]
    assert client.receive_data(b":alice!u@h PART #b\r\n") == ["* you left #b"]
    assert client.room == "#a"
    assert client.receive_data(b":op!o@h KICK #a alice :out\r\n") == [
        "* op kicked you from #a (out)"
    ]
    assert client.room is None and client.prompt == "[no room] alice> "
    assert client.receive_data(b":alice!u@h NICK bob\r\n") == ["* you are now bob"]
    assert client.prompt == "[no room] bob> "


def test_a_message_split_across_reads_is_shown_once_whole() -> None:
    client = joined()
    assert client.receive_data(b":bob!b@h PRIVMSG #lobby :hel") == []
    assert client.receive_data(b"lo\r") == []
    assert client.receive_data(b"\n") == ["[#lobby] <bob> hello"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("line\rforged", "line\\rforged"),
        ("bell\x07", "bell\\x07"),
        ("c1\x9bcsi", "c1\\x9bcsi"),
        ("\x02bold\x02 \x0304,12colour\x03 \x1funder", "bold colour under"),
        ("plain é 日本", "plain é 日本"),
    ],
)
def test_peer_text_is_escaped_never_passed_raw(text: str, expected: str) -> None:
    assert display(text) == expected


def test_escapes_in_every_field_of_an_incoming_message_are_made_visible() -> None:
    client = joined()
    evil = b":b\x1b[2Job!x@h PRIVMSG #lobby :\x1b]0;pwn\x07\x1b[1;1H\xff\xfe\r\n"
    (shown,) = client.receive_data(evil)
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown == "[#lobby] <b\\x1b[2Job> \\x1b]0;pwn\\x07\\x1b[1;1H\ufffd\ufffd"


def test_over_long_and_malformed_server_lines_are_reported_and_skipped() -> None:
    client = joined()
    head = b":bob!b@h PRIVMSG #lobby :"
    at_limit = head + b"x" * (MAX_INCOMING_LINE - len(head) - 2) + b"\r\n"
    assert len(at_limit) == MAX_INCOMING_LINE
    assert client.receive_data(at_limit)[0].startswith("[#lobby] <bob> xxx")
    past = at_limit[:-2] + b"y\r\n"
    shown = client.receive_data(past + b":bob!b@h PRIVMSG #lobby :next\r\n")
    assert shown == [
        f"! the server sent a line over {MAX_INCOMING_LINE} bytes; dropped",
        "[#lobby] <bob> next",
    ]
    assert client.receive_data(b"12345 nonsense\r\n") == [
        "! unreadable line from the server: bad command '12345'"
    ]


def test_room_name_adds_a_hash_only_when_missing() -> None:
    assert room_name("lobby") == "#lobby"
    assert room_name("#lobby") == "#lobby"
    assert room_name("&local") == "&local"


# -- the line editor ---------------------------------------------------------------------


def typed(keys: bytes) -> LineEditor:
    editor = LineEditor()
    assert editor.feed(keys) == []
    return editor


def test_editor_submits_on_enter_and_starts_a_fresh_line() -> None:
    editor = LineEditor()
    assert editor.feed(b"hello\rworld\n") == ["hello", "world"]
    assert editor.text == "" and editor.cursor == 0


@pytest.mark.parametrize(
    ("keys", "text", "cursor"),
    [
        (b"abc\x7f", "ab", 2),
        (b"abc\x08\x08", "a", 1),
        (b"\x7f", "", 0),
        (b"one two\x15", "", 0),
        (b"one two\x1b[D\x1b[D\x1b[D\x15", "two", 0),
        (b"one two  \x17", "one ", 4),
        (b"one two\x17\x17", "", 0),
        (b"abc\x1b[D\x1b[DX", "aXbc", 2),
        (b"abc\x1b[D\x1b[D\x1b[CX", "abXc", 3),
        (b"abc\x1bOD\x1bODX", "aXbc", 2),
        (b"abc\x1b[HX", "Xabc", 1),
        (b"abc\x01X\x05Y", "XabcY", 5),
        (b"abc\x1b[H\x1b[3~", "bc", 0),
        (b"abc\x1b[D\x1b[D\x0b", "a", 1),
        (b"abc\x1b[1;5D\x1b[200~x", "abcx", 4),
        (b"a\x1bxb", "ab", 2),
        (b"tab\there", "tab here", 8),
        (b"caf\xc3\xa9 \xe6\x97\xa5", "café 日", 6),
        (b"x\x1b[D\x1b[D\x1b[D\x7f", "x", 0),
        (b"ab\x00\x02\x1ccd", "abcd", 4),
    ],
)
def test_editor_keys(keys: bytes, text: str, cursor: int) -> None:
    editor = typed(keys)
    assert (editor.text, editor.cursor) == (text, cursor)


def test_editor_utf8_and_escape_sequences_split_across_reads() -> None:
    editor = LineEditor()
    for piece in (b"\xc3", b"\xa9", b"\x1b", b"[", b"D", b"\xe6\x97", b"\xa5"):
        editor.feed(piece)
    assert (editor.text, editor.cursor) == ("日é", 1)


def test_ctrl_c_quits_and_ctrl_d_quits_only_on_an_empty_line() -> None:
    assert typed(b"abc\x03").quit
    editor = typed(b"abc\x1b[D\x04")
    assert not editor.quit and editor.text == "ab"
    assert typed(b"\x04").quit


def test_render_redraws_the_whole_line_with_the_cursor_in_place() -> None:
    editor = typed(b"hello\x1b[D\x1b[D")
    assert editor.render("[#a] al> ", 80) == "\r\x1b[K[#a] al> hello\r\x1b[12C"
    assert typed(b"").render("", 80) == "\r\x1b[K\r"


def test_render_scrolls_a_line_wider_than_the_screen() -> None:
    editor = typed(b"0123456789abcdefghij")
    shown = editor.render("> ", 12)  # 9 columns for text, the last column kept free
    assert shown == "\r\x1b[K> bcdefghij\r\x1b[11C"
    editor.feed(b"\x01")
    assert editor.render("> ", 12) == "\r\x1b[K> 012345678\r\x1b[2C"


def test_text_width_counts_wide_characters_twice() -> None:
    assert text_width("ab日本") == 6
    assert text_width("e\u0301") == 1
