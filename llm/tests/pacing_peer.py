"""A second worker process for llm/tests/test_pacing.py: a Pacer of its own, against the test
database, making calls to a chat-completions server.

    python -m llm.tests.pacing_peer <db name> <base url> <provider key> <max concurrent> <calls>

Prints "ready" once its Pacer runs, then, when done, one JSON line: the statuses it got."""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def main(base_url: str, key: str, limit: int, calls: int) -> list[int]:
    import openai

    from llm.pacing import Limits, Pacer

    pacer = Pacer(process_id=f"peer-{os.getpid()}", sync_interval_s=0.05)
    await pacer.start()
    client = openai.AsyncOpenAI(api_key="sk-peer", base_url=base_url, max_retries=0, timeout=10)
    print("ready", flush=True)

    async def one(index: int) -> int:
        permit = await pacer.acquire(key, Limits(max_concurrent=limit), bot=f"peer-bot-{index % 2}", tokens=20)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.APIStatusError as exc:
            pacer.release(permit, status=exc.status_code, headers=exc.response.headers, tokens_used=None)
            return exc.status_code
        except BaseException:
            pacer.release(permit, status=None, headers=None, tokens_used=None)
            raise
        pacer.release(permit, status=raw.status_code, headers=raw.headers, tokens_used=None)
        return raw.status_code

    try:
        return list(await asyncio.gather(*(one(index) for index in range(calls))))
    finally:
        await client.close()
        await pacer.stop()


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()
    from django.conf import settings

    db_name, url, provider, most, count = sys.argv[1:6]
    settings.DATABASES["default"]["NAME"] = db_name
    statuses = asyncio.run(main(url, provider, int(most), int(count)))
    print(json.dumps(statuses), flush=True)
