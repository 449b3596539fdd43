"""The core's domain terms (hotline/model.py): names and skills as they reach AMI and SQL."""
from __future__ import annotations

import pytest

from hotline.model import SkillError, format_skills, parse_skills, valid_name


@pytest.mark.parametrize("name", ["general", "policy-market", "1001", "a_b", "x" * 64])
def test_names_of_letters_digits_dash_and_underscore(name):
    assert valid_name(name)


@pytest.mark.parametrize("name", ["", "x" * 65, "general\n", "gen eral", "gen,eral", "mandarin:1", "队列", "１００１",
                                  "a\r\nUniqueid: 1"])
def test_anything_else_is_not_a_name(name):
    assert not valid_name(name)


def test_skills_read_and_written_in_one_format():
    skills = parse_skills("mandarin:1+enterprise:3")
    assert skills == {"mandarin": 1, "enterprise": 3}
    assert format_skills(skills) == "enterprise:3+mandarin:1"
    assert parse_skills(format_skills(skills)) == skills
    for bad in ("mandarin:0", "mandarin:11", "mandarin:x", "man darin:1", "mandarin\nx:1"):
        with pytest.raises(SkillError):
            parse_skills(bad)
