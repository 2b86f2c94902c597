"""The one parser for on/off settings, shared by pipeline parameters, MINIO_SECURE and the server's switches."""

from __future__ import annotations

from contract.errors import SettingError

TRUE_SPELLINGS = ("1", "true", "yes", "on")
FALSE_SPELLINGS = ("0", "false", "no", "off")
# Empty is "off" here (MINIO_SECURE= in a shell); the server's settings refuse it before asking.
_FALSE = {*FALSE_SPELLINGS, ""}


def parse_bool(value: str | bool, name: str, error: type[Exception] = SettingError) -> bool:
    """Any case of 1/true/yes/on or 0/false/no/off (or a bool) as a bool.

    Args:
        value: the raw setting, or a bool passed through.
        name: the setting's name, for the error message.
        error: the exception type raised for anything else (the caller's domain error).

    Returns:
        The boolean the spelling means.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_SPELLINGS:
        return True
    if text in _FALSE:
        return False
    raise error(f"{name}={value!r} is not a boolean: expected 0/1/true/false")
