"""Calls to the Telegram Bot API (https://core.telegram.org/bots/api) and its error rules.

Every method is `POST <api base>/bot<token>/<method>` with a JSON body; every answer is
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": N, "description": "...",
"parameters": {"retry_after": S}}`. The URL holds the token: `provider_call` never logs it nor
puts it in an error, and nothing here does either."""

from __future__ import annotations

from typing import Any

from channels_app.dispatch import AttemptOutcome, ProviderAnswer, answer_outcome, provider_call

# What we ask Telegram to send us (getUpdates/setWebhook's allowed_updates).
ALLOWED_UPDATES = ["message", "edited_message"]
DESCRIPTION_MAX_LENGTH = 200


def method_url(*, api_base: str, token: str, method: str) -> str:
    return f"{api_base.rstrip('/')}/bot{token}/{method}"


def bot_call(
    *,
    api_base: str,
    token: str,
    method: str,
    body: dict[str, Any],
    log_context: dict[str, Any],
    deadline_s: float | None = None,
) -> ProviderAnswer:
    return provider_call(
        url=method_url(api_base=api_base, token=token, method=method),
        json_body=body,
        deadline_s=deadline_s,
        log_context={**log_context, "method": method},
        log_event="telegram call",
    )


def answer_ok(answer: ProviderAnswer) -> bool:
    return (
        not answer.error
        and answer.status_code is not None
        and 200 <= answer.status_code < 300
        and isinstance(answer.data, dict)
        and answer.data.get("ok") is True
    )


def answer_problem(answer: ProviderAnswer) -> str:
    """Why a call failed, in words safe to store and show (Telegram's `description` names the
    problem, never the token or the text sent)."""
    if answer.error:
        return answer.error
    data = answer.data if isinstance(answer.data, dict) else {}
    description = data.get("description")
    code = data.get("error_code", answer.status_code)
    if isinstance(description, str) and description:
        return f"Telegram answered {code}: {description[:DESCRIPTION_MAX_LENGTH]}"
    return f"Telegram answered {answer.status_code} without a Bot API answer"


def _retry_after(answer: ProviderAnswer) -> float | None:
    data = answer.data if isinstance(answer.data, dict) else {}
    parameters = data.get("parameters")
    if isinstance(parameters, dict):
        value = parameters.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return answer.retry_after_s


def call_outcome(answer: ProviderAnswer) -> AttemptOutcome:
    """One call's answer as a delivery attempt's outcome.

    - ok: HTTP 2xx with `"ok": true`.
    - 429 (flood control): retried after `parameters.retry_after` seconds.
    - 5xx, and no answer at all (a timeout, a refused connection): retried.
    - 403 (the user blocked the bot, the bot was kicked from the group) and every other 4xx
      (400 chat not found, 401/404 a revoked token): final, no retry can help.
    """
    if answer_ok(answer):
        return answer_outcome(answer, ok=True)
    if answer.error:
        return answer_outcome(answer, ok=False)
    status = answer.status_code or 0
    problem = answer_problem(answer)
    if status == 429:
        return answer_outcome(answer, ok=False, error=problem, retry_after_s=_retry_after(answer))
    if status >= 500 or 200 <= status < 300:
        # A 2xx that is not `"ok": true` is not Telegram's answer (a proxy's page): try again.
        return answer_outcome(answer, ok=False, error=problem)
    return answer_outcome(answer, ok=False, error=problem, permanent=True)


def chat_id_value(chat_id: str) -> int | str:
    """Telegram's chat ids are integers (negative for groups); `@channelusername` is a string."""
    try:
        return int(chat_id)
    except ValueError:
        return chat_id
