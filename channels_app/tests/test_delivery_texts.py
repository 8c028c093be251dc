"""Stored delivery results stay in English; the admin shows them in the operator's language."""

from __future__ import annotations

import pytest
from django.utils import translation

from channels_app.delivery_texts import delivery_text_display


@pytest.mark.parametrize(
    ("stored", "russian"),
    [
        ("Received status code 503", "Получен код ответа 503"),
        (
            "Received status code 301 (redirects are not followed)",
            "Получен код ответа 301 (перенаправления не выполняются)",
        ),
        ("HTTP 200 in 7 ms", "HTTP 200 за 7 мс"),
        ("Timed out after 10 s", "Нет ответа за 10 с"),
        ("Connection timed out after 2.5 s", "Соединение не установлено за 2.5 с"),
        ("Connection failed: connection refused", "Ошибка соединения: connection refused"),
        ("Invalid request: InvalidHeader", "Неверный запрос: InvalidHeader"),
        ("The LLM said no", "The LLM said no"),  # not the dispatcher's: as it is
    ],
)
def test_the_dispatchers_texts_are_shown_in_russian(stored: str, russian: str) -> None:
    with translation.override("ru"):
        assert delivery_text_display(stored) == russian
    with translation.override("en"):
        assert delivery_text_display(stored) == stored
