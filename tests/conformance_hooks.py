"""Schemathesis hooks of the conformance run (tests/conformance, configured by
tests/schemathesis.toml).

1. `before_call` makes a schema-valid `Idempotency-Key` unique per request. The fuzzer draws short
   keys (and the document's example) again and again for different bodies, and pushgate rightly
   answers such a reuse 422 (20422) without looking at the body: most sends would test nothing
   else. A schema-invalid key is left as drawn (it must still be refused).

2. `positive_data_acceptance_past_the_schema` takes the place of Schemathesis'
   `positive_data_acceptance`: it fails on every schema-valid request pushgate refuses, except a
   refusal for one of the RULES below, which the OpenAPI document states in words because JSON
   Schema cannot (a page token pushgate did not issue, a Liquid template that does not parse, a send
   time in the past, key material that is not a key, an App that does not exist, a state that
   forbids the change, a limit counted in bytes). A 400 passes only if *every* field it names is such
   a rule's field with that rule's message, so a valid value refused for anything else still fails
   the run. Each refusal a rule excuses is counted in the file $CONFORMANCE_EXCUSED names, if any
   (tests/conformance prints the counts).
"""

from __future__ import annotations

import itertools
import os
import re
from collections import namedtuple

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

# --- 1. a fresh Idempotency-Key per request ------------------------------------------------------

_KEY_HEADER = "idempotency-key"
_KEY = re.compile(r"[!-~]{1,255}")  # the document's pattern, ^[!-~]+$, and maxLength
_keys = itertools.count()


@schemathesis.hook
def before_call(context, case, kwargs):
    for name, value in (case.headers or {}).items():
        if name.lower() == _KEY_HEADER and isinstance(value, str) and _KEY.fullmatch(value):
            # Still 1 to 255 visible ASCII characters: the case stays schema-valid.
            case.headers[name] = f"{value[:200]}-{next(_keys)}"


# --- 2. schema-valid data is accepted, but for the rules no schema can state ---------------------

# A refusal the document describes in words: a short name; which operations (their ids); which
# answer (status and code); for code 20001, which field (a regular expression it matches in full)
# with which message (a regular expression found in it); and why no schema can say it. (A named
# tuple: Schemathesis loads this file without registering it as a module, as dataclasses need.)
Rule = namedtuple("Rule", "name operations status code field message why")

LISTS = frozenset(
    {
        "listPushNotifications",
        "listOperations",
        "listOperationErrors",
        "listCredentials",
        "listApps",
        "listDeviceRegistrations",
        "listUsers",
    }
)
SEND = frozenset({"sendPushNotifications"})
CANCELS = frozenset({"cancelPushNotification", "cancelOperation"})
CREDENTIAL = frozenset({"createCredential"})
REGISTRATION = frozenset({"createDeviceRegistration"})
TEMPLATES = r"content\.(title|body|image|collapseKey)|content\.data\..+|tags\..+"

RULES = [
    Rule("pageToken", LISTS, 400, 20001, r"pageToken", r"^is not a valid page token",
         "page tokens are opaque and tamper-evident: only a token pushgate issued for this list and these "
         "filters opens a page"),
    Rule("not cancelable", CANCELS, 400, 30409, None, None,
         "only what is SCHEDULED or QUEUED can be canceled: a state, not a shape"),
    Rule("sendAt", SEND, 400, 20001, r"schedule\.sendAt\[\d+\]",
         r"^(must be in the future|must be at most 7 days ahead|repeats an earlier instant)$",
         "a send time is after now and at most 7 days ahead, each instant once: JSON Schema knows no now, "
         "and uniqueItems compares text, not instants"),
    Rule("template", SEND, 400, 20001, TEMPLATES, r"^invalid Liquid template",
         "a Liquid template that does not parse"),
    Rule("image", SEND, 400, 20001, r"content\.image", r"^must be an absolute http\(s\) URL$",
         "an image without template markup is an absolute http(s) URL (format uri admits any scheme)"),
    Rule("collapseKey", SEND, 400, 20001, r"content\.collapseKey",
         r"^(must be at most 64 bytes|may not contain control characters)$",
         "a collapse key is at most 64 bytes of UTF-8, without control characters (maxLength counts "
         "characters)"),
    Rule("sound", SEND, 400, 20001, r"sound", r"at most 256 bytes",
         "a sound name is at most 256 bytes of UTF-8 (maxLength counts characters)"),
    Rule("content size", SEND, 400, 20001, r"content(\.apn|\.fcm)?", r"bytes|deep",
         "the bounds of content, content.apn and content.fcm in bytes of JSON, of payload and in depth"),
    Rule("from.appName", SEND, 400, 20001, r"from\.appName", r"^no such App$", "an App that does not exist"),
    Rule("from credential", SEND, 400, 20001, r"from\.(apn|fcm)", r"^is a \w+ credential$",
         "a credential of the other provider: what an id names is state"),
    Rule("from two Apps", SEND, 400, 20001, r"from", r"^names credentials of two Apps",
         "User recipients with credentials of two Apps: what an id names is state"),
    Rule("key material", CREDENTIAL, 400, 20001, r"content\.(privateKey|certificate)", r".",
         "key material: base64 of a PEM or of service-account JSON holding a key of the right kind"),
    Rule("no such App", REGISTRATION, 400, 20001, r"appName", r"^App \w+ does not exist",
         "an App that does not exist"),
    Rule("deleted User", REGISTRATION, 400, 20001, r"userId", r"^belongs to a deleted User$", "a deleted User"),
]


def _matches(rule: Rule, operation: str, status: int, code, error) -> bool:
    if operation not in rule.operations or status != rule.status or code != rule.code:
        return False
    if rule.field is None:
        return True
    return bool(
        re.fullmatch(rule.field, str(error.get("field", "")))
        and re.search(rule.message, str(error.get("message", "")))
    )


def excused_by(operation: str, status: int, body) -> list[str] | None:
    """The rules that excuse this refusal (every field it names must be one's), or None."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    if code == 20001:
        if not errors:
            return None
        names = []
        for error in errors:
            rule = next((r for r in RULES if _matches(r, operation, status, code, error)), None)
            if rule is None:
                return None
            names.append(rule.name)
        return names
    rule = next((r for r in RULES if r.field is None and _matches(r, operation, status, code, {})), None)
    return [rule.name] if rule else None


@schemathesis.check
def positive_data_acceptance_past_the_schema(ctx, response, case):
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        try:
            body = response.json()
        except ValueError:
            body = None
        names = excused_by(case.operation.definition.raw.get("operationId", ""), response.status_code, body)
        if names is None:
            raise
        log = os.environ.get("CONFORMANCE_EXCUSED")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write("".join(f"{name}\n" for name in sorted(set(names))))
        return None
