"""`text_split`: Telegram's 4,096-character limit, cut at the best boundary."""

from __future__ import annotations

import pytest

from channels_app.kinds.telegram.splitting import MESSAGE_MAX_LENGTH, text_split, utf16_length


def _words(parts: list[str]) -> list[str]:
    return " ".join(parts).split()


def test_a_text_that_fits_is_one_part_unchanged() -> None:
    text = "  Hello\n\nthere. " + "x" * 100
    assert text_split(text) == [text]
    assert text_split("a" * MESSAGE_MAX_LENGTH) == ["a" * MESSAGE_MAX_LENGTH]


def test_a_long_text_is_cut_at_sentences_in_order() -> None:
    sentences = [f"Sentence number {i} says something." for i in range(400)]
    text = " ".join(sentences)
    parts = text_split(text)
    assert len(parts) > 1
    assert all(utf16_length(part) <= MESSAGE_MAX_LENGTH for part in parts)
    assert all(part.endswith("something.") for part in parts)
    assert _words(parts) == text.split()


def test_a_line_break_is_preferred_to_a_sentence() -> None:
    text = "First line. Still the first line.\nSecond line. More."
    assert text_split(text, 40) == ["First line. Still the first line.", "Second line. More."]


def test_a_paragraph_is_preferred_to_a_line() -> None:
    text = "Para one line one.\nPara one line two.\n\nPara two line one."
    assert text_split(text, 50) == ["Para one line one.\nPara one line two.", "Para two line one."]


def test_a_boundary_too_early_gives_way_to_a_lower_one_that_fills_the_part() -> None:
    # The only line break is near the start; cutting there would leave a tiny part.
    text = "Hi\n" + "word " * 30
    parts = text_split(text, 60)
    assert len(parts[0]) > 30 and _words(parts) == text.split()


def test_words_are_never_cut_unless_one_is_longer_than_the_limit() -> None:
    text = " ".join(["abcdefgh"] * 50)
    parts = text_split(text, 20)
    assert all(set(part.split()) == {"abcdefgh"} for part in parts)
    assert _words(parts) == text.split()

    long_word = "z" * 45
    parts = text_split(f"start {long_word} end", 20)
    assert parts == ["start", "z" * 20, "z" * 20, "zzzzz end"]


def test_a_closing_quote_stays_with_its_sentence() -> None:
    text = 'She said "Yes." Then she left the room quietly.'
    assert text_split(text, 20)[0] == 'She said "Yes."'


def test_length_is_counted_as_telegram_counts_it_in_utf16_units() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 code units, no boundary: cut inside, never inside an emoji
    parts = text_split(text)
    assert [utf16_length(p) for p in parts] == [4096, 6000 - 4096]
    assert "".join(parts) == text


@pytest.mark.parametrize("limit", [2, 7, 50, 333])
def test_every_part_fits_and_nothing_is_lost(limit: int) -> None:
    text = "Привет! Как дела?\nХорошо. " * 40 + "end"
    parts = text_split(text, limit)
    assert all(0 < utf16_length(part) <= limit for part in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())
