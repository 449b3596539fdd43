"""Menu files (ivr/menus/*.yaml): loading, every problem on one line, `hotline ivr check`, prompts."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from ivr.menu import MENUS_DIR, SOUNDS_DIR, MenuError, check_file, load_line, load_lines, normalize_number
from ivr.prompts import PROMPTS_FILE, load_texts

MINIMAL = """\
line: test
start: menu
languages: [zh]
fallback: {queue: general}
nodes:
  menu:
    type: menu
    prompt: main-menu
    options:
      "1": {queue: general}
"""


def write(tmp_path: Path, text: str, name: str = "test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_menus_are_valid() -> None:
    lines = load_lines()
    assert set(lines) == {"main", "enterprise"}
    main = lines["main"]
    assert main.languages == ("zh", "yue", "en") and main.default_language == "zh"
    assert set(main.nodes["main-menu"].options) == {"1", "2", "3", "4", "9", "0", "8"}
    assert {t.number for t in main.transfers.values()} == {"110", "119", "120", "122"}


def test_minimal_file_loads(tmp_path: Path) -> None:
    plan = load_line(write(tmp_path, MINIMAL))
    assert plan.name == "test" and plan.start == "menu"
    assert plan.skills_for(plan.nodes["menu"].options["1"], "yue") == "cantonese:1"


@pytest.mark.parametrize(
    "change, problem",
    [
        (('"1": {queue: general}', '"1": {goto: nowhere}'), "node 'menu' option '1': unknown node 'nowhere'"),
        (('"1": {queue: general}', '"1": {transfer: police}'), "node 'menu' option '1': unknown transfer 'police'"),
        (('"1": {queue: general}', '"1": {service: weather}'),
         "node 'menu' option '1': unknown service 'weather' (known: callback, message, progress-query)"),
        (("prompt: main-menu", "prompt: no-such"),
         f"prompt 'no-such': no audio for zh ({SOUNDS_DIR / 'zh' / 'hotline' / 'no-such.wav'})"),
        (('"1": {queue: general}', '"1": {queue: general, goto: menu}'),
         "node 'menu' option '1': a target needs exactly one of goto, queue, transfer, service, hangup"),
        (("type: menu", "type: menuu"), "node 'menu': type 'menuu': one of play, menu, broadcast, caller-list, hours"),
        (('"1": {queue: general}', '"1": {queue: general, skills: {elderly: 11}}'),
         "node 'menu' option '1' skill 'elderly': must be an integer from 1 to 10 (got 11)"),
        (("start: menu", "start: nope"), "start: unknown node 'nope'"),
        (('"1": {queue: general}', '"12": {queue: general}'),
         "node 'menu': option '12': 1 to max_digits (1) keys 0-9, * or #"),
        (("languages: [zh]", "languages: [zh, fr]"), "languages: language 'fr': one of zh, yue, en"),
        (("fallback: {queue: general}", "fallback: {hangup: true}"),
         "fallback: must be a queue (callers who cannot choose get a person)"),
    ],
)
def test_each_problem_is_one_line(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    path = write(tmp_path, MINIMAL.replace(*change))
    assert check_file(path) == [f"{path}: {problem}"]
    with pytest.raises(MenuError) as caught:
        load_line(path)
    assert caught.value.problems == [f"{path}: {problem}"]


def test_unreachable_nodes_and_loops_without_exit(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """\
  a:
    type: play
    prompt: welcome
    next: {goto: b}
  b:
    type: play
    prompt: welcome
    next: {goto: a}
""")
    assert check_file(path) == [
        f"{path}: node 'a': unreachable from the start node 'menu'",
        f"{path}: node 'b': unreachable from the start node 'menu'",
        f"{path}: node 'a': a loop with no exit (never reaches a queue, transfer, service or hang-up)",
        f"{path}: node 'b': a loop with no exit (never reaches a queue, transfer, service or hang-up)",
    ]


def test_a_menu_always_has_an_exit_through_its_retries(tmp_path: Path) -> None:
    """Menus that only lead to each other still end in the fallback queue after their tries."""
    text = MINIMAL.replace('"1": {queue: general}', '"1": {goto: other}') + """\
  other:
    type: menu
    prompt: main-menu
    options:
      "0": {goto: menu}
"""
    assert check_file(write(tmp_path, text)) == []


def test_broken_yaml_and_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "line: [unclosed\n")
    assert check_file(path) == [f"{path}: line 2: not valid YAML"]
    missing = tmp_path / "missing.yaml"
    assert check_file(missing) == [f"{missing}: cannot read (No such file or directory)"]


def test_two_files_for_one_line(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    write(tmp_path, MINIMAL, "b.yaml")
    with pytest.raises(MenuError) as caught:
        load_lines(tmp_path)
    assert caught.value.problems == [f"{tmp_path / 'b.yaml'}: line 'test' is also defined in {tmp_path / 'a.yaml'}"]


def test_business_hours_and_holiday_calendar() -> None:
    hours = load_lines()["enterprise"].hours["office"]
    assert hours.open_at(dt.datetime(2026, 11, 18, 9, 0))          # Wednesday morning
    assert not hours.open_at(dt.datetime(2026, 11, 18, 12, 0))     # lunch
    assert not hours.open_at(dt.datetime(2026, 11, 18, 17, 30))    # after hours
    assert not hours.open_at(dt.datetime(2026, 11, 22, 10, 0))     # Sunday
    assert not hours.open_at(dt.datetime(2026, 10, 7, 10, 0))      # National Day holiday (a Wednesday)
    assert not hours.open_at(dt.datetime(2026, 2, 17, 10, 0))      # Spring Festival
    assert hours.open_at(dt.datetime(2026, 2, 14, 10, 0))          # Saturday worked instead (调休)


def test_calendar_problems(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + """\
hours:
  office:
    days: [mon, funday]
    open: ["09:00-08:00"]
calendar:
  2026:
    holidays: [2027-01-01, 2026-13-01]
""")
    assert check_file(path) == [
        f"{path}: hours 'office': day 'funday': one of mon, tue, wed, thu, fri, sat, sun",
        f"{path}: hours 'office': open '09:00-08:00': ends before it starts",
        f"{path}: hours 'office': needs at least one 'open' range such as 09:00-12:00",
        f"{path}: calendar 2026: 2027-01-01 is not in 2026",
        f"{path}: calendar 2026 holidays: '2026-13-01': YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD",
    ]


@pytest.mark.parametrize("raw, digits", [("+86 138-0000-0099", "13800000099"), ("008613800000099", "13800000099"),
                                         ("13800000099", "13800000099"), ('"; HANGUP', ""), ("86", "86")])
def test_caller_numbers_are_digits_only(raw: str, digits: str) -> None:
    assert normalize_number(raw) == digits


# --------------------------------------------------------------------------- the command


def hotline(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_hotline_ivr_check_passes_on_the_shipped_menus() -> None:
    result = hotline("ivr", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "2 menu file(s): no problems"


def test_hotline_ivr_check_one_line_per_problem(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('"1": {queue: general}', '"1": {goto: nowhere}')
                 .replace("prompt: main-menu", "prompt: gone"))
    result = hotline("ivr", "check", str(path), str(MENUS_DIR / "main.yaml"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}: node 'menu' option '1': unknown node 'nowhere'",
        f"{path}: prompt 'gone': no audio for zh ({SOUNDS_DIR / 'zh' / 'hotline' / 'gone.wav'})",
    ]


# --------------------------------------------------------------------------- prompts


def test_every_prompt_of_every_menu_has_a_text_and_audio_in_each_language() -> None:
    _, texts = load_texts()
    for plan in load_lines().values():
        for prompt in plan.prompts():
            assert set(texts.get(prompt, {})) >= set(plan.languages), prompt
    from ivr.progress import STATUSES

    for prompt in ["progress-ask", "progress-not-found", "progress-unavailable", "progress-more", "goodbye",
                   *(f"progress-{s}" for s in STATUSES)]:
        assert set(texts[prompt]) == {"zh", "yue", "en"}, prompt


def test_built_prompts_are_8khz_mono_16bit_wav() -> None:
    _, texts = load_texts()
    for name, languages in texts.items():
        for lang in languages:
            with wave.open(str(SOUNDS_DIR / lang / "hotline" / f"{name}.wav"), "rb") as audio:
                assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2), name
                assert audio.getnframes() > 4000, name  # at least half a second


def test_prompt_build_without_espeak_or_sox_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # neither tool on the PATH
    result = subprocess.run([sys.executable, "-m", "ivr.prompts", "build", "--sounds", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ivr.prompts: error: espeak-ng and sox not found: install with 'apt-get install espeak-ng sox'"]
    assert PROMPTS_FILE.is_file()


def test_hotline_ivr_refuses_to_start_with_a_broken_menu(tmp_path: Path) -> None:
    menus = tmp_path / "menus"
    menus.mkdir()
    for source in MENUS_DIR.glob("*.yaml"):
        (menus / source.name).write_text(source.read_text(encoding="utf-8").replace("{goto: emergency,", "{goto: x,"),
                                         encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_IVR_MENUS_DIR=str(menus), HOTLINE_DATA_DIR=str(tmp_path / "data"), HOTLINE_LOG_LEVEL="ERROR")
    result = subprocess.run([sys.executable, "-m", "launcher.cli", "ivr"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"hotline: error: menu {menus / 'main.yaml'}: node 'main-menu' option '8': unknown node 'x' "
        "(and 1 more problem(s): see 'hotline ivr check')"]
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""
