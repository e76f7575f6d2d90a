"""helpers.glue: what the site shows is exactly the text the cell printed."""

from __future__ import annotations

import pytest
from myst_nb.core.variables import format_plain_text

from helpers.glue import _Text, glue, listed


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (0.9, ".3f", "0.900"),
        (1202, ",", "1,202"),
        (3, "", "3"),
        ("test_007, test_014", "", "test_007, test_014"),
        ("it's 'quoted'", "", "it's 'quoted'"),
        (0.0125, ".1%", "1.2%"),
    ],
)
def test_the_site_shows_the_printed_text(value, fmt, text, capsys):
    assert glue("name", value, fmt) is None  # a cell ending with it shows no result
    assert capsys.readouterr().out == f"name = {text}\n"
    # what MyST-NB does with the glued object's text/plain form before inserting it
    assert format_plain_text(repr(_Text(text)), "") == text


def test_show_false_prints_nothing(capsys):
    glue("quiet", 2, show=False)
    assert capsys.readouterr().out == ""


def test_names_must_be_identifiers():
    with pytest.raises(ValueError, match="identifier"):
        glue("not a name", 1)


def test_listed():
    assert listed([]) == "none"
    assert listed(["a"]) == "a"
    assert listed(["a", "b"]) == "a and b"
    assert listed(x for x in (1, 4, 3)) == "1, 4 and 3"
