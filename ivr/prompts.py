"""The IVR's prompts: texts in ``ivr/prompts.yaml``, audio in ``ivr/sounds/<lang>/hotline/``.

``python -m ivr.prompts build [NAME...]`` speaks every text (or the named ones)
with espeak-ng and converts it with sox to what Asterisk plays without
transcoding: WAV, 8 kHz, mono, 16-bit. The built files are committed, so running
the hotline or its tests needs neither tool; the command is for staff who change
a text (``apt-get install espeak-ng sox``). ``python -m ivr.prompts list`` shows
each prompt and whether its audio exists.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import yaml

from .menu_model import LANGUAGES, SOUNDS_DIR

__all__ = ["PROMPTS_FILE", "PromptError", "load_texts", "build", "main"]

PROMPTS_FILE = Path(__file__).resolve().parent / "prompts.yaml"
RATE = 8000


class PromptError(Exception):
    """One line for the operator."""


def load_texts(path: Path = PROMPTS_FILE) -> tuple[dict[str, str], dict[str, dict[str, list[tuple[str, str]]]]]:
    """(voices by language, {prompt: {language: [(segment language, text), ...]}})."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"{path}: {exc}") from None
    voices = doc.get("voices") or {}
    prompts: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for name, texts in (doc.get("prompts") or {}).items():
        if not isinstance(texts, dict):
            raise PromptError(f"{path}: prompt '{name}': a mapping of language: text")
        prompts[name] = {}
        for lang, text in texts.items():
            if lang not in LANGUAGES:
                raise PromptError(f"{path}: prompt '{name}': unknown language '{lang}'")
            segments = text if isinstance(text, list) else [{lang: text}]
            parts: list[tuple[str, str]] = []
            for segment in segments:
                if not isinstance(segment, dict) or len(segment) != 1:
                    raise PromptError(f"{path}: prompt '{name}' {lang}: segments are {{language: text}}")
                (seg_lang, seg_text), = segment.items()
                if seg_lang not in voices:
                    raise PromptError(f"{path}: prompt '{name}': no voice for language '{seg_lang}'")
                parts.append((seg_lang, str(seg_text)))
            prompts[name][lang] = parts
    return voices, prompts


def _tools() -> tuple[str, str]:
    espeak = shutil.which("espeak-ng")
    sox = shutil.which("sox")
    if espeak is None or sox is None:
        missing = [name for name, found in (("espeak-ng", espeak), ("sox", sox)) if not found]
        raise PromptError(f"{' and '.join(missing)} not found: install with 'apt-get install espeak-ng sox'")
    return espeak, sox


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PromptError(f"{Path(argv[0]).name} failed: {detail[-1] if detail else result.returncode}")


def build(names: Optional[list[str]] = None, *, texts: Path = PROMPTS_FILE, sounds: Path = SOUNDS_DIR,
          speed: int = 150) -> list[Path]:
    """Build the WAV files of ``names`` (all prompts when None); returns the files written."""
    espeak, sox = _tools()
    voices, prompts = load_texts(texts)
    unknown = sorted(set(names or []) - set(prompts))
    if unknown:
        raise PromptError(f"unknown prompt(s): {', '.join(unknown)}")
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="hotline-prompts-") as tmp:
        for name in names or sorted(prompts):
            for lang, segments in prompts[name].items():
                pieces = []
                for i, (seg_lang, text) in enumerate(segments):
                    raw = Path(tmp) / f"{name}-{lang}-{i}.wav"
                    _run([espeak, "-v", voices[seg_lang], "-s", str(speed), "-w", str(raw), text])
                    pieces.append(str(raw))
                out = sounds / lang / "hotline" / f"{name}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                _run([sox, *pieces, "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(out)])
                written.append(out)
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivr.prompts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="speak the texts into ivr/sounds/<lang>/hotline/*.wav")
    build_cmd.add_argument("names", nargs="*", help="only these prompts")
    build_cmd.add_argument("--texts", type=Path, default=PROMPTS_FILE)
    build_cmd.add_argument("--sounds", type=Path, default=SOUNDS_DIR)
    sub.add_parser("list", help="each prompt and the languages whose audio is missing")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            written = build(args.names or None, texts=args.texts, sounds=args.sounds)
            print(f"built {len(written)} file(s) in {args.sounds}")
        else:
            _, prompts = load_texts()
            for name, texts in sorted(prompts.items()):
                missing = [lang for lang in texts if not (SOUNDS_DIR / lang / "hotline" / f"{name}.wav").is_file()]
                print(f"{name}: " + (f"missing {', '.join(missing)}" if missing else "ok"))
    except PromptError as exc:
        print(f"ivr.prompts: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
