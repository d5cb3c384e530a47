"""Validate free text before it is scrubbed, embedded or sent anywhere.

Text reaches the encoder from CRM exports, the serving endpoint and the CLI. A request with a field that
is not a string, is not valid UTF-8 or is longer than the encoder can read is the client's mistake, so it
gets a `FieldValidationError` naming the field (the server keeps serving) rather than a stack trace from
deep inside the tokenizer. The length limit is in characters: the model truncates at 256 word pieces
(~1,000 characters of English), and anything far beyond that is silently lost signal, so we refuse it.
"""

from __future__ import annotations

import unicodedata

from fulqrun_ml.errors import FieldValidationError

# The encoder reads 256 word pieces; 4,000 characters leaves room for dense text and still refuses dumps.
MAX_TEXT_CHARS = 4000


def validate_text(value: object, field: str = "text", max_chars: int = MAX_TEXT_CHARS) -> str:
    """`value` as a clean str, or a FieldValidationError naming `field` and saying what is wrong.

    Bytes are accepted only when they decode as UTF-8 (a CSV export in Latin-1 is the usual culprit);
    a str with lone surrogates (bad decoding upstream) and NUL/control characters are refused too.
    """
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise FieldValidationError(field, f"not valid UTF-8 (byte {err.start}): re-encode as UTF-8") from None
    if not isinstance(value, str):
        raise FieldValidationError(field, f"must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise FieldValidationError(
            field, f"wrong encoding: unpaired surrogate at character {err.start}; decode the source as UTF-8"
        ) from None
    if len(value) > max_chars:
        raise FieldValidationError(field, f"too long: {len(value)} characters, at most {max_chars}")
    for position, char in enumerate(value):
        if unicodedata.category(char) == "Cc" and char not in "\n\r\t":
            raise FieldValidationError(field, f"control character U+{ord(char):04X} at character {position}")
    return unicodedata.normalize("NFC", value)


def validate_texts(values: object, field: str = "texts", max_chars: int = MAX_TEXT_CHARS) -> list[str]:
    """A list of texts, each validated; the error names the item (`texts[3]`)."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise FieldValidationError(field, f"must be a list of strings, got {type(values).__name__}")
    return [validate_text(v, f"{field}[{i}]", max_chars) for i, v in enumerate(values)]  # type: ignore[attr-defined]
