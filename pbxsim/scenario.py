"""What the simulated callers and agents do: arrival rate, menu choices, patience, talk time."""
from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

__all__ = ["Scenario", "ScenarioError", "CallerPlan"]


class ScenarioError(ValueError):
    pass


@dataclass
class Scenario:
    # Traffic
    rate_per_min: float = 120.0
    duration_s: Optional[float] = None          # None: until stopped
    max_calls: Optional[int] = None
    seed: int = 12345
    enterprise_share: float = 0.1               # share dialling the enterprise line
    main_number: str = "12345"
    enterprise_number: str = "123451"
    # Languages of the callers (the IVR may ask; prompts and skills follow it)
    languages: dict[str, float] = field(default_factory=lambda: {"zh": 0.9, "yue": 0.07, "en": 0.03})
    # Main-menu choices ('' = says nothing and lets the menu time out)
    menu_choices: dict[str, float] = field(default_factory=lambda: {
        "1": 0.45, "2": 0.2, "3": 0.1, "9": 0.05, "0": 0.15, "": 0.05})
    invalid_digit_share: float = 0.03           # first keys a digit that is not on the menu
    ivr_hangup_share: float = 0.02              # hangs up in the IVR
    reaction_s: tuple[float, float] = (0.3, 1.5)  # from prompt start to the first key
    # Queue and talk
    patience_mean_s: float = 60.0               # exponential; the caller abandons after it
    talk_mean_s: float = 20.0                   # lognormal-ish around the mean
    talk_min_s: float = 2.0
    agent_hangs_up_share: float = 0.3
    # Agents' phones
    agents: int = 20
    first_agent: int = 1001
    answer_delay_s: tuple[float, float] = (0.3, 1.5)
    no_answer_share: float = 0.0
    # Draining at the end
    drain_s: float = 60.0

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> "Scenario":
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ScenarioError(f"scenario {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ScenarioError(f"scenario {path}: must be a mapping")
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ScenarioError(f"scenario {path}: unknown key '{key}'")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data).validated()

    def validated(self) -> "Scenario":
        if self.rate_per_min <= 0:
            raise ScenarioError("scenario: rate_per_min must be > 0")
        if self.agents < 0:
            raise ScenarioError("scenario: agents must be >= 0")
        for name in ("enterprise_share", "invalid_digit_share", "ivr_hangup_share",
                     "agent_hangs_up_share", "no_answer_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ScenarioError(f"scenario: {name} must be between 0 and 1")
        for name in ("languages", "menu_choices"):
            weights = getattr(self, name)
            if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ScenarioError(f"scenario: {name} needs positive weights")
        return self


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


@dataclass
class CallerPlan:
    """One caller's intentions, drawn up front so a run is reproducible from its seed."""

    number: str
    line: str
    language: str
    menu_inputs: list[Optional[str]]             # per GET DATA prompt: digits, or None = silence
    hangup_in_ivr_at_prompt: Optional[int]       # hang up when this prompt (0-based) starts
    patience_s: float
    talk_s: float
    agent_hangs_up: bool
    reaction_s: float
    queue_choice: Optional[str] = None           # at the queue's offer: "callback" (key 1) or "message" (2)
    callbacks_unanswered: int = 0                # call backs let ring out before answering one
    answers_callback: bool = True                # False: after those, gives up (abandoned in the queue)
    callback_answer_s: Optional[float] = None    # lets a call back ring this long (default: reaction_s)

    @classmethod
    def draw(cls, scenario: Scenario, rng: random.Random) -> "CallerPlan":
        enterprise = rng.random() < scenario.enterprise_share
        choice = _pick(rng, scenario.menu_choices)
        inputs: list[Optional[str]] = []
        if rng.random() < scenario.invalid_digit_share:
            inputs.append("7")
        inputs.append(choice or None)
        # Keep answering the same way if the menu asks again.
        inputs += [choice or None] * 3
        hangup_at = rng.randrange(0, 2) if rng.random() < scenario.ivr_hangup_share else None
        mean = max(scenario.talk_mean_s, scenario.talk_min_s)
        talk = max(scenario.talk_min_s, rng.lognormvariate(0, 0.5) * mean / 1.133)
        return cls(
            number="1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9)),
            line="enterprise" if enterprise else "main",
            language=_pick(rng, scenario.languages),
            menu_inputs=inputs,
            hangup_in_ivr_at_prompt=hangup_at,
            patience_s=rng.expovariate(1.0 / scenario.patience_mean_s) if scenario.patience_mean_s > 0 else 1e9,
            talk_s=talk,
            agent_hangs_up=rng.random() < scenario.agent_hangs_up_share,
            reaction_s=rng.uniform(*scenario.reaction_s),
        )
