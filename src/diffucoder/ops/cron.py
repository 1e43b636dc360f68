"""Cron expressions as Kubeflow Pipelines reads them, checked before they reach the API.

KFP parses a recurring run's cron with ``robfig/cron`` v1 ``Parse``: **six** fields, seconds
first (``second minute hour day-of-month month day-of-week``), day-of-week optional. A standard
five-field crontab line is therefore *accepted and misread*: ``0 3 * * *`` ("03:00 daily") becomes
"second 0 of minute 3 of every hour". :func:`kfp_cron` takes the standard five-field form (and
robfig's descriptors such as ``@daily``) and returns the six-field form KFP means, so a schedule
fires when its author expects; a six-field expression is passed on unchanged.

Written here rather than taken from a cron library because the libraries on PyPI (croniter and
kin) follow Vixie cron or put seconds last; what matters is robfig's grammar: ``*`` or ``?``,
numbers or names, ``a-b`` ranges, ``/step`` and comma lists.
"""

from __future__ import annotations

import re

# (name, low, high, names) per field of KFP's six-field form
FIELDS = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(
                ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
            )
        },
    ),
    ("day-of-week", 0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)
DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_TERM = re.compile(r"^(?P<range>\*|\?|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>\d+))?$")


class CronError(ValueError):
    """A cron expression KFP would refuse or misread; the message says which field and why."""


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.lower()) if not text.isdigit() else int(text)
    if value is None:
        raise CronError(f"{name} field: {text!r} is not a number or a known name")
    if not low <= value <= high:
        raise CronError(f"{name} field: {value} is outside {low}-{high}")
    return value


def _check_field(field: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    for term in field.split(","):
        match = _TERM.match(term)
        if not match:
            raise CronError(
                f"{name} field: {term!r} is not '*', '?', a value, a range 'a-b' or one with '/step'"
            )
        if match["step"] is not None and int(match["step"]) < 1:
            raise CronError(f"{name} field: step {match['step']} must be at least 1")
        if match["range"] in ("*", "?"):
            continue
        ends = [_value(part, name, low, high, names) for part in match["range"].split("-")]
        if len(ends) == 2 and ends[0] > ends[1]:
            raise CronError(f"{name} field: range {match['range']} runs backwards")


def kfp_cron(expression: str) -> str:
    """The six-field (seconds first) expression KFP needs for ``expression``.

    Accepts a standard five-field crontab line (seconds become 0), a six-field KFP expression, or a
    descriptor (``@daily``, ``@hourly``, ...). ``@every <duration>`` is refused: use an interval.

    Raises:
        CronError: naming the field that is wrong.
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() in DESCRIPTORS:
            return DESCRIPTORS[text.lower()]
        if text.lower().startswith("@every"):
            raise CronError(f"{expression!r}: use --interval SECONDS instead of @every")
        raise CronError(f"{expression!r}: unknown descriptor; known: {', '.join(DESCRIPTORS)}")
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(
            f"{expression!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month "
            "day-of-week) or KFP's 6 (second first)"
        )
    for field, (name, low, high, names) in zip(fields, FIELDS, strict=True):
        _check_field(field, name, low, high, names)
    return " ".join(fields)
