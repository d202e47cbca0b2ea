"""The chat logic without sockets: ChatCore fed lines, writing to list sinks."""

from __future__ import annotations

import pytest

from wirekit.proto.irc import parse_line
from wirekit.services.chat.config import ChatConfig
from wirekit.services.chat.core import ChatCore
from wirekit.services.chat.model import Mode, TokenBucket, User


class ListSink:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        assert not self.closed, "a line after close"
        self.out.append(data)

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """One connection to a core: ``say`` lines, ``take`` what arrived since last time."""

    def __init__(self, core: ChatCore) -> None:
        self.core = core
        self.sink = ListSink()
        self.user: User = core.connect(self.sink, "127.0.0.1")
        self.read = 0

    def say(self, *lines: str | bytes) -> None:
        for line in lines:
            self.core.receive(self.user, line.encode() if isinstance(line, str) else line)

    def take(self) -> list[str]:
        new = self.sink.out[self.read :]
        self.read = len(self.sink.out)
        return [b.decode() for b in new]

    def numerics(self) -> list[str]:
        return [parse_line(line.encode().rstrip()).command for line in self.take()]


def make(**config: object) -> tuple[ChatCore, Clock]:
    clock = Clock()
    return ChatCore(ChatConfig(**config), clock=clock, wall=lambda: 1_800_000_000.0), clock  # type: ignore[arg-type]


def irc(core: ChatCore, nick: str) -> Peer:
    peer = Peer(core)
    peer.say(f"NICK {nick}", f"USER {nick} 0 * :{nick} real")
    assert "001" in peer.numerics()
    return peer


def plain(core: ChatCore, first: str = "hi") -> Peer:
    peer = Peer(core)
    peer.say(first)
    peer.take()
    return peer


# --- modes ---------------------------------------------------------------------


@pytest.mark.parametrize("opener", ["CAP LS 302", "PASS x", "NICK bob", "USER a 0 * :b"])
def test_irc_openers(opener: str) -> None:
    core, _ = make()
    peer = Peer(core)
    peer.say(opener)
    assert peer.user.mode is Mode.IRC


@pytest.mark.parametrize("first", ["hello", "nick bob", "Nick here, hi", "/nick bob", "JOIN #x"])
def test_anything_else_is_plain(first: str) -> None:
    core, _ = make()
    peer = Peer(core)
    peer.say(first)
    assert peer.user.mode is Mode.PLAIN
    assert peer.user.registered


def test_greeting_is_valid_irc_and_readable() -> None:
    core, _ = make()
    peer = Peer(core)
    (line,) = peer.take()
    msg = parse_line(line.encode().rstrip())
    assert msg.command == "NOTICE" and "nc/telnet users type a line" in msg.params[-1]


# --- plain mode --------------------------------------------------------------------


def test_plain_user_gets_guest_nick_lobby_and_help() -> None:
    core, _ = make()
    peer = Peer(core)
    peer.say("hello")
    out = peer.take()
    assert "* you are guest-1; /nick NAME changes it\r\n" in out
    assert any(line.startswith("* commands: /nick") for line in out)
    assert "[#lobby] -- you joined #lobby (1: @guest-1)\r\n" in out
    assert [r.name for r in peer.user.rooms.values()] == ["#lobby"]


def test_plain_message_formats() -> None:
    core, _ = make()
    a, b = plain(core), plain(core)
    a.take()
    b.say("hello there", "/me waves", "//slash line")
    assert a.take() == [
        "[#lobby] <guest-2> hello there\r\n",
        "[#lobby] * guest-2 waves\r\n",
        "[#lobby] <guest-2> /slash line\r\n",
    ]
    assert b.take() == []  # no echo of one's own lines


def test_plain_and_irc_see_each_other() -> None:
    core, _ = make()
    p = plain(core)
    i = irc(core, "ircer")
    i.say("JOIN #lobby")
    assert ":ircer!~ircer@127.0.0.1 JOIN #lobby\r\n" in i.take()
    assert p.take() == ["[#lobby] -- ircer joined\r\n"]
    p.say("hi irc")
    assert i.take() == [":guest-1!guest-1@127.0.0.1 PRIVMSG #lobby :hi irc\r\n"]
    i.say("PRIVMSG #lobby :hi plain", "PRIVMSG #lobby :\x01ACTION nods\x01")
    assert p.take() == ["[#lobby] <ircer> hi plain\r\n", "[#lobby] * ircer nods\r\n"]


def test_plain_commands() -> None:
    core, _ = make()
    a, b = plain(core), plain(core)
    a.take()
    a.say("/nick alice")
    assert a.take() == ["-- guest-1 is now known as alice\r\n"]
    assert b.take() == ["-- guest-1 is now known as alice\r\n"]
    b.say("/nick ALICE")
    assert b.take() == ["! nick ALICE is taken\r\n"]
    a.say("/join dev")
    assert a.take()[0] == "[#dev] -- you joined #dev (1: @alice)\r\n"
    assert a.user.current is not None and a.user.current.name == "#dev"
    a.say("/topic all about dev", "/rooms")
    out = a.take()
    assert out[0] == "[#dev] -- alice set the topic: all about dev\r\n"
    assert "*   #dev (1) - all about dev\r\n" in out and "*   #lobby (2)\r\n" in out
    a.say("/who #lobby")
    assert a.take() == ["* #lobby (2): @alice, guest-2\r\n"]
    a.say("/msg guest-2 psst")
    assert b.take() == ["[pm] <alice> psst\r\n"]
    a.say("/part")
    assert a.take() == ["[#dev] -- alice left\r\n", "* now talking in #lobby\r\n"]
    a.say("/frobnicate", "/quit bye now")
    assert a.take() == ["! unknown command /frobnicate; /help lists the commands\r\n", "* bye\r\n"]
    assert a.sink.closed
    assert b.take() == ["-- alice quit (Quit: bye now)\r\n"]


def test_plain_history_on_join_and_on_request() -> None:
    core, _ = make(history=2)
    a = plain(core, "first")
    a.say("second", "third")
    b = Peer(core)
    b.say("/history 1")
    out = b.take()
    replayed = [line.split(" ", 2)[2] for line in out if "<guest-1>" in line]
    assert replayed == ["<guest-1> second\r\n", "<guest-1> third\r\n", "<guest-1> third\r\n"]
    assert out.count("[#lobby] -- last 2 messages:\r\n") == 1
    assert out.count("[#lobby] -- last 1 messages:\r\n") == 1


def test_plain_user_typing_an_irc_command_gets_a_hint_and_sends_nothing() -> None:
    core, _ = make()
    a, b = plain(core), plain(core)
    a.take()
    a.say("PRIVMSG #lobby :hello", "NICK bob")
    out = a.take()
    assert len(out) == 2 and all("looks like an IRC command" in line for line in out)
    assert b.take() == []
    assert a.user.nick == "guest-1"


def test_plain_text_is_sanitized() -> None:
    core, _ = make()
    a, b = plain(core), plain(core)
    b.take()
    a.say(b"\x1b[2J\x1b]0;owned\x07red \x1b[31malert\x07 caf\xe9")
    assert b.take() == ["[#lobby] <guest-1> red alert caf\ufffd\r\n"]


# --- IRC registration ------------------------------------------------------------------


def test_registration_burst() -> None:
    core, _ = make(motd=("hello", "world"))
    peer = Peer(core)
    peer.take()
    peer.say("CAP LS 302", "NICK alice", "USER al 0 * :Alice A")
    assert peer.take() == [":wirekit CAP * LS :\r\n"]  # waits for CAP END
    peer.say("CAP END")
    codes = peer.numerics()
    assert codes[:5] == ["001", "002", "003", "004", "005"]
    assert codes[-4:] == ["375", "372", "372", "376"]
    assert {"251", "252", "253", "254", "255", "265", "266"} <= set(codes)


def test_isupport_values() -> None:
    core, _ = make()
    peer = Peer(core)
    peer.say("NICK a", "USER a 0 * :a")
    tokens: set[str] = set()
    for line in peer.take():
        msg = parse_line(line.encode().rstrip())
        if msg.command == "005":
            assert len(msg.params) <= 15
            tokens.update(msg.params[1:-1])
    assert {"CASEMAPPING=rfc1459", "PREFIX=(ov)@+", "CHANMODES=b,k,l,imnst", "NICKLEN=30"} <= tokens


def test_commands_before_registration_get_451() -> None:
    core, _ = make()
    peer = Peer(core)
    peer.say("NICK early")
    peer.take()
    peer.say("JOIN #x", "PRIVMSG #x :hi", "WHO #x")
    assert peer.numerics() == ["451", "451", "451"]
    assert not core.rooms
    peer.say("PING :tok")
    assert peer.take() == [":wirekit PONG wirekit tok\r\n"]


def test_nick_errors() -> None:
    core, _ = make()
    irc(core, "alice")
    peer = Peer(core)
    peer.say("NICK Alice")  # rfc1459 casemapping: same nick
    assert peer.take()[-1] == ":wirekit 433 * Alice :Nickname is already in use\r\n"
    peer.say("NICK 9lives", "NICK")
    assert peer.numerics() == ["432", "431"]
    peer.say("NICK [al]", "USER x 0 * :x")
    assert "001" in peer.numerics()


def test_nick_change_reaches_room_once() -> None:
    core, _ = make()
    a, b = irc(core, "a"), irc(core, "b")
    a.say("JOIN #one,#two")
    b.say("JOIN #one,#two")
    a.take()
    b.take()
    a.say("NICK a2")
    assert a.take() == [":a!~a@127.0.0.1 NICK a2\r\n"]
    assert b.take() == [":a!~a@127.0.0.1 NICK a2\r\n"]


def test_irc_client_sending_plain_text_gets_421() -> None:
    core, _ = make()
    peer = irc(core, "x")
    peer.say("hello everyone", "123 go")
    assert peer.take() == [
        ":wirekit 421 x HELLO :Unknown command\r\n",
        ":wirekit 421 x 123 :Unknown command\r\n",
    ]


def test_password() -> None:
    core, _ = make(password="s3cret")
    bad = Peer(core)
    bad.say("PASS nope", "NICK bad", "USER b 0 * :b")
    out = bad.take()
    assert ":wirekit 464 bad :Password incorrect\r\n" in out and out[-1].startswith("ERROR ")
    assert bad.sink.closed
    good = Peer(core)
    good.say("PASS s3cret", "NICK good", "USER g 0 * :g")
    assert "001" in good.numerics()
    p = Peer(core)
    p.say("hello")
    assert "* this server needs a password: type /pass PASSWORD\r\n" in p.take()
    p.say("more text")
    assert p.take() == ["! type /pass PASSWORD first\r\n"]
    p.say("/pass s3cret")
    assert "* you are guest-1; /nick NAME changes it\r\n" in p.take()


# --- IRC channels -------------------------------------------------------------------------


def test_join_answers_and_queries_irssi_sends() -> None:
    core, _ = make()
    a = irc(core, "alice")
    a.say("JOIN #chan")
    assert a.numerics() == ["JOIN", "353", "366"]
    a.say("MODE #chan", "WHO #chan", "MODE #chan b")
    assert a.numerics() == ["324", "329", "352", "315", "368"]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("JOIN nohash", "403"),
        ("PART #nowhere", "403"),
        ("PRIVMSG nobody :x", "401"),
        ("PRIVMSG", "411"),
        ("PRIVMSG #chan", "412"),
        ("PART #elsewhere", "403"),
        ("KICK #chan nobody", "482"),
        ("TOPIC #nowhere", "403"),
        ("KICK #chan bob", "482"),
        ("MODE #chan +o bob", "482"),
        ("WHOIS nobody", "401"),
        ("USER again 0 * :x", "462"),
        ("FOO", "421"),
        ("JOIN", "461"),
        ("PING", "409"),
        ("MODE bob +i", "502"),
        ("CAP BOGUS", "410"),
    ],
)
def test_error_numerics(line: str, code: str) -> None:
    core, _ = make()
    irc(core, "bob").say("JOIN #chan")
    a = irc(core, "alice")
    a.say("JOIN #chan")
    a.take()
    a.say(line)
    assert code in a.numerics()


def test_notice_errors_are_never_answered() -> None:
    core, _ = make()
    a = irc(core, "alice")
    a.say("NOTICE nobody :x", "NOTICE #nowhere :x")
    assert a.take() == []


def test_channel_modes_and_ops() -> None:
    core, _ = make()
    op, bob, carol = irc(core, "op"), irc(core, "bob"), irc(core, "carol")
    op.say("JOIN #c")
    bob.say("JOIN #c")
    op.say("MODE #c +mk secret")
    bob.take()
    bob.say("PRIVMSG #c :can I talk?")
    assert bob.numerics() == ["404"]
    op.say("MODE #c +v bob")
    bob.take()
    bob.say("PRIVMSG #c :now I can")
    assert bob.take() == []
    carol.say("JOIN #c", "JOIN #c wrong")
    assert carol.numerics() == ["475", "475"]
    carol.say("JOIN #c secret")
    assert carol.numerics()[0] == "JOIN"
    op.say("MODE #c +l 3")
    core.receive(irc(core, "dave").user, b"JOIN #c secret")
    op.say("MODE #c")
    assert any(" 324 op #c +mnt" in line and "kl secret 3" in line for line in op.take())
    op.say("KICK #c carol :out")
    assert ":op!~op@127.0.0.1 KICK #c carol out\r\n" in carol.take()
    op.say("MODE #c +b carol", "MODE #c b")
    assert op.numerics()[-2:] == ["367", "368"]
    op.say("INVITE carol #c")
    carol.say("JOIN #c secret")  # banned, but invited
    assert "JOIN" in carol.numerics()


def test_invite_only_and_ban_refuse() -> None:
    core, _ = make()
    op, x = irc(core, "op"), irc(core, "x")
    op.say("JOIN #i", "MODE #i +i")
    x.say("JOIN #i")
    assert x.numerics() == ["473"]
    op.say("MODE #i -i+b x*!*@*")
    x.say("JOIN #i")
    assert x.numerics() == ["474"]


def test_away_whois_list_names_topic() -> None:
    core, _ = make()
    a, b = irc(core, "a"), irc(core, "b")
    a.say("JOIN #t", "TOPIC #t :the topic", "AWAY :gone fishing")
    b.say("JOIN #t")
    assert b.numerics() == ["JOIN", "332", "333", "353", "366"]
    b.say("PRIVMSG a :hello?")
    assert b.take() == [":wirekit 301 b a :gone fishing\r\n"]
    b.say("WHOIS a")
    assert b.numerics() == ["311", "319", "312", "301", "317", "318"]
    b.say("LIST", "NAMES #t", "TOPIC #t")
    assert b.numerics() == ["321", "322", "323", "353", "366", "332", "333"]
    a.take()
    a.say("AWAY")
    assert a.numerics() == ["305"]


def test_quit_reaches_rooms_and_frees_nick() -> None:
    core, _ = make()
    a, b = irc(core, "a"), irc(core, "b")
    a.say("JOIN #q")
    b.say("JOIN #q")
    b.take()
    a.say("QUIT :gone")
    assert a.take()[-1].startswith("ERROR :Closing link: a[127.0.0.1] (Quit: gone)")
    assert b.take() == [":a!~a@127.0.0.1 QUIT :Quit: gone\r\n"]
    assert core.find("a") is None and a.sink.closed


def test_irc_text_is_sanitized_but_ctcp_action_kept() -> None:
    core, _ = make()
    a, b = irc(core, "a"), irc(core, "b")
    a.say("JOIN #s")
    b.say("JOIN #s")
    b.take()
    a.say(b"PRIVMSG #s :\x1b[2Jclear \x03" + b"4red\x0f", b"PRIVMSG #s :\x01ACTION \x1b[5mx\x01")
    assert b.take() == [
        ":a!~a@127.0.0.1 PRIVMSG #s :clear red\r\n",
        ":a!~a@127.0.0.1 PRIVMSG #s :\x01ACTION x\x01\r\n",
    ]


# --- timeouts and flood control ------------------------------------------------------------


def test_nick_then_nothing_times_out() -> None:
    core, clock = make(register_timeout=10)
    peer = Peer(core)
    peer.say("NICK lazy")
    clock.now += 10
    core.tick()
    assert not peer.sink.closed  # at the limit
    clock.now += 0.01
    core.tick()
    assert (
        peer.take()[-1]
        == "ERROR :Closing link: lazy[127.0.0.1] (registration timed out after 10 s)\r\n"
    )
    assert peer.sink.closed and core.find("lazy") is None and "lazy" not in core.users


def test_ping_timeout() -> None:
    core, clock = make(ping_interval=30, ping_timeout=20)
    a, b = irc(core, "a"), irc(core, "b")
    a.say("JOIN #p")
    b.say("JOIN #p")
    a.take()
    b.take()
    clock.now += 30.5
    core.tick()
    assert a.take() == ["PING wirekit\r\n"]
    assert b.take() == ["PING wirekit\r\n"]
    b.say("PONG wirekit")
    clock.now += 20
    core.tick()
    assert not a.sink.closed  # at the limit
    clock.now += 0.5
    core.tick()
    assert b.take() == [":a!~a@127.0.0.1 QUIT :Ping timeout: 51 seconds\r\n"]
    assert a.take()[-1].startswith("ERROR :Closing link: a[127.0.0.1] (Ping timeout: ")
    assert not b.sink.closed
    assert a.sink.closed


def test_token_bucket_delays_after_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(10.0) == 0.0  # refills, but never past the burst
    assert [bucket.take(10.0) for _ in range(3)][-1] == pytest.approx(0.5)


def test_room_limits_per_user() -> None:
    core, _ = make(max_rooms_per_user=2)
    a = irc(core, "a")
    a.say("JOIN #1,#2", "JOIN #3")
    assert a.numerics()[-1] == "405"
    assert len(a.user.rooms) == 2


# --- arbitrary input -----------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

WORDS = st.sampled_from(
    ["NICK", "USER", "JOIN", "PART", "PRIVMSG", "NOTICE", "MODE", "KICK", "TOPIC", "WHO",
     "WHOIS", "INVITE", "AWAY", "CAP", "PASS", "PING", "LIST", "NAMES", "/join", "/nick",
     "/msg", "/part", "/topic", "/who", "/me", "/history", "#a", "#b", "+o", "-v", "+kl",
     "+b", "x", ":", "", "\x1b[31m", "\xff"]
)  # fmt: skip
LINES = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    st.lists(WORDS, min_size=1, max_size=6).map(lambda ws: " ".join(ws).encode("utf-8", "replace")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), LINES), max_size=25))
def test_arbitrary_lines_never_raise_and_output_stays_clean(
    script: list[tuple[int, bytes]],
) -> None:
    core, _ = make()
    peers = [irc(core, "alpha"), plain(core), Peer(core)]
    peers[0].say("JOIN #a")
    for who, line in script:
        peers[who].say(line)
    for peer in peers:
        for out in peer.take():
            raw = out.encode()
            assert raw.endswith(b"\r\n") and len(raw) <= 512
            body = raw[:-2]
            assert b"\r" not in body and b"\n" not in body and b"\x1b" not in body
            if peer.user.mode is not Mode.PLAIN:
                parse_line(body)  # every line to an IRC client parses as IRC


def test_irc_history_command_replays_the_last_n_then_an_end_notice() -> None:
    core, _ = make(history=3)
    a = irc(core, "alice")
    a.say("JOIN #r")
    for n in range(4):
        a.say(f"PRIVMSG #r :m{n}")
    a.take()
    a.say("HISTORY #r 2")
    assert [line.split(" ", 3)[3] for line in a.take()] == [
        ":[08:00] <alice> m2\r\n",
        ":[08:00] <alice> m3\r\n",
        ":-- end of history\r\n",
    ]
    # At the number kept (3) and past it (9): the 3 kept, no more.
    for asked in ("3", "9", ""):
        a.say(f"HISTORY #r {asked}".strip())
        assert sum("> m" in line for line in a.take()) == 3


def test_irc_history_of_a_room_not_joined_or_unknown_is_an_error() -> None:
    core, _ = make()
    a, b = irc(core, "alice"), irc(core, "bob")
    a.say("JOIN #r")
    b.say("HISTORY #r")
    assert b.numerics() == ["442"]
    b.say("HISTORY #nowhere")
    assert b.numerics() == ["403"]
    b.say("HISTORY")
    assert b.numerics() == ["461"]


def test_rooms_on_the_server_at_the_limit_and_one_past_it() -> None:
    core, _ = make(max_rooms=4)
    a, b = irc(core, "alice"), irc(core, "bob")
    a.say("JOIN #r1", "JOIN #r2", "JOIN #r3", "JOIN #r0")  # at the limit: all four made
    assert a.numerics().count("JOIN") == 4
    a.say("JOIN #r4")
    assert a.numerics() == ["403"]
    b.say("JOIN #r2")  # joining a room that exists still works
    assert "JOIN" in b.numerics()
    a.say("PART #r1", "JOIN #r4")  # #r1 is gone (empty): there is room again
    assert "JOIN" in a.numerics()
    p = Peer(core)
    p.say("hi")  # a plain user: #lobby is made even with the server at its limit
    assert "[#lobby] -- you joined #lobby (1: @guest-1)\r\n" in p.take()
    p.say("/join #r5")
    assert any("the server holds 4 rooms, its limit" in line for line in p.take())
