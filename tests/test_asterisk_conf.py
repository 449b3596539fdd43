"""The Asterisk .conf parser (pbxsim/asterisk_conf.py), against Asterisk's own rules."""
from __future__ import annotations

from pathlib import Path


import pytest

from pbxsim.recorded import RECORDED
from pbxsim.asterisk_conf import (
    AsteriskConf,
    ConfError,
    load_conf,
    parse_conf,
)
from pbxsim.extensions_conf import DialplanLine, parse_dialplan, split_app

SHARED = RECORDED
REFERENCE_CONFIG = SHARED / "config-reference"

needs_reference = pytest.mark.skipif(
    not REFERENCE_CONFIG.is_dir(), reason=f"recorded Asterisk reference not available at {REFERENCE_CONFIG}"
)


def entries(conf: AsteriskConf, name: str) -> list[tuple]:
    section = conf.get(name)
    assert section is not None, name
    return [tuple(e) for e in section.entries]


# ------------------------------------------------------------------ sections and entries


def test_sections_entries_operators_and_line_numbers() -> None:
    conf = parse_conf(
        "[general]\n"
        "static = yes\n"
        "  writeprotect=no  \n"
        "\n"
        "[ctx]\n"
        "exten => 100,1,Answer()\n"
        " same => n,Hangup()\n",
        filename="extensions.conf",
    )
    assert conf.filename == "extensions.conf"
    assert conf.names() == ["general", "ctx"]
    assert entries(conf, "general") == [("static", "=", "yes", 2), ("writeprotect", "=", "no", 3)]
    assert entries(conf, "ctx") == [
        ("exten", "=>", "100,1,Answer()", 6),
        ("same", "=>", "n,Hangup()", 7),
    ]
    entry = conf.get("ctx").entries[0]
    assert (entry.key, entry.op, entry.value, entry.line) == ("exten", "=>", "100,1,Answer()", 6)
    assert entry.where == "extensions.conf:6"
    assert conf.get("ctx").where == "extensions.conf:5"


def test_value_keeps_inner_equals_and_whitespace_is_trimmed() -> None:
    conf = parse_conf("[s]\nkey =  a = b  \nother=>x=>y\n")
    assert entries(conf, "s") == [("key", "=", "a = b", 2), ("other", "=>", "x=>y", 3)]


def test_only_ascii_whitespace_is_trimmed_like_ast_strip() -> None:
    conf = parse_conf("[s]\nprompt = \u3000欢迎\u3000 \n")
    assert conf.get("s").get("prompt") == "\u3000欢迎\u3000"


def test_repeated_keys_are_all_kept_in_order() -> None:
    conf = parse_conf("[q]\nmember => PJSIP/1001\nmember => PJSIP/1002\nstrategy = rrmemory\n")
    section = conf.get("q")
    assert section.get_all("member") == ["PJSIP/1001", "PJSIP/1002"]
    assert section.get("MEMBER") == "PJSIP/1002"  # keys are case-insensitive, the last one wins
    assert "strategy" in section and "missing" not in section
    assert section.get("missing", "default") == "default"


def test_repeated_section_names_stay_separate_sections() -> None:
    conf = parse_conf(
        "[1001]\ntype = endpoint\naors = 1001\n"
        "[1001]\ntype = aor\nmax_contacts = 1\n"
        "[1001]\ntype = auth\nusername = 1001\n"
    )
    assert [s.get("type") for s in conf.get_all("1001")] == ["endpoint", "aor", "auth"]
    assert conf.get("1001").get("type") == "endpoint"  # the first one, like ast_category_get
    assert conf.names() == ["1001"]
    assert [s.line for s in conf.sections] == [1, 4, 7]


def test_section_lookup_is_case_insensitive_like_asterisk() -> None:
    conf = parse_conf("[General]\na = 1\n")
    assert conf.get("general").name == "General"
    assert "GENERAL" in conf


def test_crlf_line_endings() -> None:
    conf = parse_conf("[s]\r\nkey = value\r\n")
    assert entries(conf, "s") == [("key", "=", "value", 2)]


def test_plus_equals_appends_to_the_last_value() -> None:
    # Like config.c, the raw text after '+=' is appended, leading space included.
    conf = parse_conf("[s]\nallow = ulaw\nallow +=,alaw\nallow += ,gsm\nfresh += new\n")
    assert entries(conf, "s") == [("allow", "=", "ulaw,alaw ,gsm", 2), ("fresh", "=", "new", 5)]


# ------------------------------------------------------------------ comments


def test_semicolon_comments_and_escaped_semicolon() -> None:
    conf = parse_conf(
        "; a comment line\n"
        "[s] ; after a header\n"
        "key = value ; trailing comment\n"
        r"literal = a\;b ; real comment" "\n"
        "exten => 1,1,NoOp(x);comment\n"
    )
    assert entries(conf, "s") == [
        ("key", "=", "value", 3),
        ("literal", "=", "a;b", 4),
        ("exten", "=>", "1,1,NoOp(x)", 5),
    ]


def test_other_backslashes_are_kept() -> None:
    conf = parse_conf("[cel_master.tsv]\nseparator_character = \\t\n")
    assert conf.get("cel_master.tsv").get("separator_character") == "\\t"


def test_dashed_rulers_are_plain_comments() -> None:
    conf = parse_conf(";----------------\n[s]\n; ---------- x ----------\nkey = 1 ;---\n")
    assert entries(conf, "s") == [("key", "=", "1", 4)]


def test_block_comments_nest_and_span_lines() -> None:
    conf = parse_conf(
        "[s]\n"
        "a = 1 ;-- inline --; b_tail = x\n"
        ";-- start\n"
        "hidden = 1\n"
        ";-- nested --;\n"
        "still = hidden\n"
        "end --; c = 3\n"
        "d = 4\n"
    )
    assert entries(conf, "s") == [("a", "=", "1  b_tail = x", 2), ("c", "=", "3", 7), ("d", "=", "4", 8)]


def test_unclosed_block_comment_is_an_error() -> None:
    with pytest.raises(ConfError, match=r"^x.conf:2: .*never closed"):
        parse_conf("[s]\n;-- open\na = 1\n", filename="x.conf")


def test_stray_block_comment_end_is_an_error() -> None:
    # Asterisk would silently treat every following line as a comment.
    with pytest.raises(ConfError, match=r"^x.conf:2: .*never opened"):
        parse_conf("[s]\na = b --;\n", filename="x.conf")


# ------------------------------------------------------------------ templates


def test_template_entries_come_first_and_templates_are_not_iterated() -> None:
    conf = parse_conf(
        "[common](!)\ntype = endpoint\nallow = ulaw\n"
        "[agent](!,common)\ncontext = agents\n"
        "[1001](agent)\nallow = alaw\ncallerid = <1001>\n"
    )
    assert [s.name for s in conf] == ["1001"]
    assert [(s.name, s.is_template) for s in conf.sections] == [
        ("common", True), ("agent", True), ("1001", False),
    ]
    section = conf.get("1001")
    assert section.bases == ("agent",)
    assert [tuple(e) for e in section.entries] == [
        ("type", "=", "endpoint", 2),
        ("allow", "=", "ulaw", 3),
        ("context", "=", "agents", 5),
        ("allow", "=", "alaw", 7),
        ("callerid", "=", "<1001>", 8),
    ]
    assert [e.inherited for e in section.entries] == [True, True, True, False, False]
    assert section.get("allow") == "alaw"  # the section's own line overrides the template
    assert conf.get("common") is None and conf.get("agent") is None


def test_several_templates_are_applied_in_order() -> None:
    conf = parse_conf("[a](!)\nx = 1\n[b](!)\ny = 2\n[c](a,b)\nz = 3\n")
    assert [e.key for e in conf.get("c").entries] == ["x", "y", "z"]
    assert conf.get("c").bases == ("a", "b")


def test_a_plain_section_can_be_inherited() -> None:
    conf = parse_conf("[base]\nx = 1\n[child](base)\n")
    assert conf.get("child").get("x") == "1"


def test_inheriting_an_undefined_template_is_an_error() -> None:
    with pytest.raises(ConfError, match=r"^p.conf:1: \[1001\] inherits from 'nope'"):
        parse_conf("[1001](nope)\n", filename="p.conf")


def test_template_names_are_not_trimmed_like_asterisk() -> None:
    with pytest.raises(ConfError, match="inherits from ' t'"):
        parse_conf("[t](!)\nx = 1\n[s](!, t)\n")


def test_template_defined_later_is_not_visible() -> None:
    with pytest.raises(ConfError, match="not defined above"):
        parse_conf("[s](t)\n[t](!)\n")


def test_plus_adds_to_an_existing_section() -> None:
    conf = parse_conf("[s]\na = 1\n[other]\n[s](+)\nb = 2\n")
    assert [s.name for s in conf.sections] == ["s", "other"]
    assert entries(conf, "s") == [("a", "=", "1", 2), ("b", "=", "2", 5)]


def test_plus_needs_an_existing_section() -> None:
    with pytest.raises(ConfError, match=r"\(\+\) adds to a section that does not exist"):
        parse_conf("[s](+)\na = 1\n")


# ------------------------------------------------------------------ syntax errors


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("key = value\n", 1, "entry outside any [section]"),
        ("[s]\njust words\n", 2, "no '=' in line"),
        ("[s]\n = value\n", 2, "no key before '='"),
        ("[s\n", 1, "no closing ']'"),
        ("[s](!\n", 1, "no closing ')'"),
        ("[]\n", 1, "empty section name"),
        ("[s] junk\n", 1, "unexpected text after [s]"),
        ("[s](!) junk\n", 1, "unexpected text after section options"),
        ("[s]\n#exec /bin/date\n", 2, "#exec is not allowed"),
        ("[s]\n#tryexec /bin/date\n", 2, "#tryexec is not allowed"),
        ("[s]\n#define X 1\n", 2, "unknown directive '#define'"),
        ("[s]\n#include\n", 2, "#include needs a file name"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfError) as info:
        parse_conf(text, filename="bad.conf")
    error = info.value
    assert (error.filename, error.line) == ("bad.conf", line)
    assert str(error).startswith(f"bad.conf:{line}: ")
    assert message in str(error)
    assert "\n" not in str(error)


def test_text_without_a_path_cannot_include() -> None:
    with pytest.raises(ConfError, match=r"^<string>:2: #include needs the file's path"):
        parse_conf("[s]\n#include other.conf\n")


def test_load_conf_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfError, match="cannot read"):
        load_conf(tmp_path / "absent.conf")


# ------------------------------------------------------------------ includes


def test_include_is_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "agents.conf").write_text("[1001]\ntype = endpoint\n#include more.conf\n")
    (tmp_path / "sub" / "more.conf").write_text("context = agents\n")
    (tmp_path / "pjsip.conf").write_text('[global]\ntype = global\n#include "sub/agents.conf"\n')
    conf = load_conf(tmp_path / "pjsip.conf")
    assert conf.names() == ["global", "1001"]
    section = conf.get("1001")
    assert section.filename == str(tmp_path / "sub" / "agents.conf")
    assert [(e.key, e.line, Path(e.filename).name) for e in section.entries] == [
        ("type", 2, "agents.conf"), ("context", 1, "more.conf"),
    ]


def test_include_continues_the_current_section_and_the_includer_keeps_its_own(tmp_path: Path) -> None:
    (tmp_path / "part.conf").write_text("b = 2\n[other]\nc = 3\n")
    (tmp_path / "main.conf").write_text("[s]\na = 1\n#include <part.conf>\nd = 4\n")
    conf = load_conf(tmp_path / "main.conf")
    assert [(e.key, e.value) for e in conf.get("s").entries] == [("a", "1"), ("b", "2"), ("d", "4")]
    assert [(e.key, e.value) for e in conf.get("other").entries] == [("c", "3")]


def test_include_glob_sorted_and_config_dir(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "b.conf").write_text("[b]\n")
    (tmp_path / "etc" / "a.conf").write_text("[a]\n")
    conf = parse_conf("#include *.conf\n", filename="<memory>", config_dir=tmp_path / "etc")
    assert conf.names() == ["a", "b"]


def test_missing_include_is_an_error_and_tryinclude_is_not(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("[s]\n#tryinclude nope.conf\n#tryinclude none*.conf\n#include nope.conf\n")
    with pytest.raises(ConfError, match=r"main.conf:4: #include 'nope.conf': no such file"):
        load_conf(tmp_path / "main.conf")


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("[s]\n#include b.conf\n")
    (tmp_path / "b.conf").write_text("#include ./a.conf\n")
    with pytest.raises(ConfError, match=r"b.conf:1: #include './a.conf' makes a cycle: a.conf -> b.conf -> a.conf"):
        load_conf(tmp_path / "a.conf")


def test_error_inside_an_include_names_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "bad.conf").write_text("\n\nnot a setting\n")
    (tmp_path / "main.conf").write_text("[s]\n#include bad.conf\n")
    with pytest.raises(ConfError) as info:
        load_conf(tmp_path / "main.conf")
    assert str(info.value).startswith(f"{tmp_path / 'bad.conf'}:3: ")


# ------------------------------------------------------------------ dialplan


DIALPLAN = """
[general]
static = yes

[globals]
TARGET = hotline-wait

[tmpl](!)
exten => h,1,NoOp(hangup)

[inbound](tmpl)
include => shared
include => business,09:00-18:00,mon-fri,*,*
exten => s,1,Answer()
 same => n,GotoIf($["${X}" = "(a,b)"]?done:${TARGET},s,1)
 same => n(done),Set(A=${CUT(B,\\,,2)})
 same => n,Hangup()
exten => 100,hint,PJSIP/100&PJSIP/101
exten => 100,1,Dial(PJSIP/100)
 same => 5,NoOp(five)
 same => n,Goto(done)
exten => 200/5551234,1,NoOp(caller id match)
exten => _X.,1,NoOp()
ignorepat => 9
switch => Realtime/extensions@realtime

[inbound]
exten => 300,1,Playback(beep)
"""


def lines_of(context: str) -> list[DialplanLine]:
    return parse_dialplan(parse_conf(DIALPLAN, filename="extensions.conf"))[context]


def test_dialplan_contexts_skip_general_globals_and_templates() -> None:
    plan = parse_dialplan(parse_conf(DIALPLAN))
    assert list(plan) == ["inbound"]


def test_dialplan_lines() -> None:
    rows = [(l.kind, l.exten, l.priority, l.label, l.app, l.args) for l in lines_of("inbound")]
    assert rows[:3] == [
        ("exten", "h", 1, None, "NoOp", "hangup"),  # inherited from the template
        ("include", "", None, None, "", "shared"),
        ("include", "", None, None, "", "business,09:00-18:00,mon-fri,*,*"),
    ]
    assert rows[3:7] == [
        ("exten", "s", 1, None, "Answer", ""),
        ("exten", "s", 2, None, "GotoIf", '$["${X}" = "(a,b)"]?done:${TARGET},s,1'),
        ("exten", "s", 3, "done", "Set", "A=${CUT(B,\\,,2)}"),
        ("exten", "s", 4, None, "Hangup", ""),
    ]


def test_dialplan_include_targets() -> None:
    includes = [l.target for l in lines_of("inbound") if l.kind == "include"]
    assert includes == ["shared", "business"]


def test_dialplan_hint_numbered_priorities_and_next() -> None:
    rows = [(l.kind, l.priority, l.app, l.args) for l in lines_of("inbound") if l.exten == "100"]
    assert rows == [
        ("hint", None, "PJSIP/100&PJSIP/101", ""),
        ("exten", 1, "Dial", "PJSIP/100"),
        ("exten", 5, "NoOp", "five"),
        ("exten", 6, "Goto", "done"),
    ]


def test_dialplan_explicit_priorities() -> None:
    conf = parse_conf("[c]\nexten => 1,1,NoOp(a)\nsame => 5,NoOp(b)\nsame => n,NoOp(c)\n")
    assert [l.priority for l in parse_dialplan(conf)["c"]] == [1, 5, 6]


def test_dialplan_same_priority_repeats_and_is_a_duplicate() -> None:
    conf = parse_conf("[c]\nexten => 1,1,NoOp(a)\nsame => s,NoOp(b)\n", filename="e.conf")
    with pytest.raises(ConfError, match=r"^e.conf:3: \[c\] extension '1' priority 1 already defined at e.conf:2"):
        parse_dialplan(conf)


def test_dialplan_callerid_match_and_patterns() -> None:
    rows = [(l.exten, l.callerid, l.app) for l in lines_of("inbound") if l.exten in ("200", "_X.")]
    assert rows == [("200", "5551234", "NoOp"), ("_X.", None, "NoOp")]


def test_dialplan_switch_ignorepat_and_reopened_context() -> None:
    rows = lines_of("inbound")
    switch = next(l for l in rows if l.kind == "switch")
    assert (switch.app, switch.args) == ("Realtime", "extensions@realtime")
    assert next(l for l in rows if l.kind == "ignorepat").args == "9"
    last = rows[-1]
    line = DIALPLAN.split("\n").index("exten => 300,1,Playback(beep)") + 1
    assert (last.exten, last.priority, last.app, last.args, last.line) == ("300", 1, "Playback", "beep", line)
    assert last.where == f"extensions.conf:{line}"


def test_dialplan_label_as_priority_and_offset() -> None:
    conf = parse_conf("[c]\nexten => 1,1(top),NoOp()\nexten => 1,top+2,NoOp(x)\n")
    assert [(l.priority, l.label) for l in parse_dialplan(conf)["c"]] == [(1, "top"), (3, None)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("same => n,NoOp()", "'same =>' with no 'exten =>' before it"),
        ("exten => 1,n,NoOp()", "'n' priority on the first line"),
        ("exten => 1,1,NoOp()\nexten => 1,1,NoOp()", "priority 1 already defined"),
        ("exten => 1,1(a),NoOp()\nsame => n(a),NoOp()", "label 'a' already defined"),
        ("exten => 1,1,NoOp(", "no closing parenthesis"),
        ("exten => 1,1,NoOp(x) junk", "text after the closing parenthesis"),
        ("exten => 1,1,", "no application"),
        ("exten => 1,nope,NoOp()", "unknown label 'nope'"),
        ("exten => 1,0,NoOp()", "must be 1 or more"),
        ("exten => 1", "expected 'exten => EXTEN,PRIORITY,App(args)'"),
        ("exten => 1,1(x,NoOp()", "label without closing ')'"),
        ("exten => 1,1,${APP}(x)", "bad application name"),
        ("include =>", "include without a context"),
        ("foo => bar", "unknown dialplan keyword 'foo'"),
    ],
)
def test_dialplan_errors(body: str, message: str) -> None:
    conf = parse_conf(f"[c]\n{body}\n", filename="extensions.conf")
    with pytest.raises(ConfError, match=r"^extensions.conf:\d+: \[c\] ") as info:
        parse_dialplan(conf)
    assert message in str(info.value)


def test_dialplan_continuation_resets_in_every_section() -> None:
    conf = parse_conf("[c]\nexten => 1,1,NoOp()\n[c]\nsame => n,NoOp()\n")
    with pytest.raises(ConfError, match="no 'exten =>' before it"):
        parse_dialplan(conf)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer()", ("Answer", "")),
        ("Hangup", ("Hangup", "")),
        ("NoOp(a (b) c)", ("NoOp", "a (b) c")),
        ('GotoIf($["${A}" = "1"]?yes:no)', ("GotoIf", '$["${A}" = "1"]?yes:no')),
        ("UserEvent(X,Queue: ${Q},Skills: ${S})", ("UserEvent", "X,Queue: ${Q},Skills: ${S}")),
        (" Set(A=${IF($[${B}>1]?x:y)}) ", ("Set", "A=${IF($[${B}>1]?x:y)}")),
    ],
)
def test_split_app(text: str, expected: tuple[str, str]) -> None:
    assert split_app(text) == expected


# ------------------------------------------------------------------ the recorded reference


@needs_reference
@pytest.mark.parametrize(
    "path", sorted(REFERENCE_CONFIG.glob("*.conf")) if REFERENCE_CONFIG.is_dir() else [], ids=lambda p: p.name
)
def test_every_reference_file_parses(path: Path) -> None:
    # A real Asterisk 22.10.1 loaded these files.
    load_conf(path)


@needs_reference
def test_reference_pjsip_conf_structure() -> None:
    conf = load_conf(REFERENCE_CONFIG / "pjsip.conf")
    assert [s.get("type") for s in conf.get_all("trunk")] == ["endpoint", "aor", "identify"]
    agent = conf.get("1003")
    assert agent.bases == ("agent-common",)
    assert agent.get("type") == "endpoint"
    assert agent.get("context") == "agents"
    assert agent.get("dtmf_mode") == "rfc4733"
    assert [s.get("type") for s in conf.get_all("1003")] == ["endpoint", "aor", "auth"]
    assert conf.get_all("1003")[2].get("password") == "secret1003"


@needs_reference
def test_reference_dialplan() -> None:
    plan = parse_dialplan(load_conf(REFERENCE_CONFIG / "extensions.conf"))
    assert list(plan) == ["from-trunk", "agi-test", "agents"]
    first = plan["from-trunk"][0]
    assert (first.exten, first.priority, first.app, first.args) == (
        "12345", 1, "NoOp", "Inbound hotline call from ${CALLERID(all)}",
    )
    agi = next(l for l in plan["agi-test"] if l.app == "AGI")
    assert agi.args == "${FASTAGI}/test,arg1,arg two"
