"""Envelopes and payload files are strict JSON: NaN and Infinity are refused, saying where."""

from __future__ import annotations

import json

import pytest

from policy_engine.envelope import EnvelopeError, load_json, parse_envelope


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    """Each constant Python's json accepts and JSON lacks is a JSONDecodeError at its place,
    past a string that merely spells it."""
    text = '{"note": "NaN, Infinity",\n "x": [1, ' + constant + "]}"
    with pytest.raises(json.JSONDecodeError) as caught:
        load_json(text)
    assert caught.value.msg == f"{constant} is not a JSON value"
    assert (caught.value.lineno, caught.value.colno) == (2, 11)


def test_bytes_are_located_in_characters():
    """Bytes are read as json reads them, so the column counts characters, not bytes."""
    with pytest.raises(json.JSONDecodeError) as caught:
        load_json('{"naïve \\" NaN": NaN}'.encode())
    assert (caught.value.lineno, caught.value.colno) == (1, 18)


def test_strings_that_spell_the_constants_are_plain_json():
    """ "NaN" and "Infinity" as text are ordinary strings, parsed as they are."""
    assert load_json(b'{"NaN": "Infinity", "v": [-1.5e3]}') == {"NaN": "Infinity", "v": [-1500.0]}


def test_an_envelope_with_nan_is_not_an_envelope():
    """parse_envelope refuses a payload holding NaN as not JSON, with line and column."""
    with pytest.raises(
        EnvelopeError, match=r"not JSON \(NaN is not a JSON value: line 1 column 35"
    ):
        parse_envelope(b'{"schema": "shop.Order", "price": NaN, "payload": {}}')
