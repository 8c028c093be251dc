"""The Russian admin is complete: every string in the catalogue has a translation that is
not marked fuzzy, and the compiled catalogue is the one the .po describes."""

from __future__ import annotations

import re
from pathlib import Path

from django.utils import translation

PO = Path(__file__).resolve().parents[2] / "locale" / "ru" / "LC_MESSAGES" / "django.po"
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _text(lines: list[str]) -> str:
    return "".join(match.group(1) for line in lines for match in STRING.finditer(line))


def po_entries(path: Path) -> list[dict[str, object]]:
    """Each active entry's msgid, msgstr(s) and flags; obsolete (#~) entries are skipped."""
    entries: list[dict[str, object]] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.strip().splitlines() if not line.startswith("#~")]
        flags = {flag.strip() for line in lines if line.startswith("#,") for flag in line[2:].split(",")}
        fields: dict[str, list[str]] = {}
        current = None
        for line in lines:
            if line.startswith("#"):
                continue
            keyword = line.split(" ", 1)[0]
            if keyword.startswith(("msgid", "msgstr", "msgctxt")):
                current = keyword
                fields[current] = [line[len(keyword) :]]
            elif line.startswith('"') and current:
                fields[current].append(line)
        if "msgid" not in fields:
            continue
        msgid = _text(fields["msgid"])
        if not msgid:  # the header
            continue
        strs = [_text(value) for key, value in fields.items() if key.startswith("msgstr")]
        entries.append({"msgid": msgid, "msgstrs": strs, "fuzzy": "fuzzy" in flags})
    return entries


def test_every_russian_string_is_translated_and_none_is_fuzzy() -> None:
    entries = po_entries(PO)
    assert len(entries) > 100
    untranslated = [e["msgid"] for e in entries if not e["msgstrs"] or any(s == "" for s in e["msgstrs"])]  # type: ignore[union-attr]
    fuzzy = [e["msgid"] for e in entries if e["fuzzy"]]
    assert untranslated == [], f"untranslated in {PO.name}: {untranslated}"
    assert fuzzy == [], f"fuzzy in {PO.name}: {fuzzy}"


def test_the_compiled_catalogue_matches_the_po() -> None:
    # A .po edited without compilemessages leaves the admin in English.
    with translation.override("ru"):
        assert translation.gettext("customer") == "клиент"
        assert translation.gettext("bot reply") == "ответ бота"
        assert translation.gettext("How to connect") == "Как подключить"


def test_the_admin_says_customer_bot_reply_and_employee() -> None:
    from dialogues.models import Message

    assert Message.Role.USER.label == "customer"
    assert Message.Role.ASSISTANT.label == "bot reply"
    assert Message.Role.EMPLOYEE.label == "employee"
    assert Message.Role.USER.value == "USER"  # stored values unchanged
