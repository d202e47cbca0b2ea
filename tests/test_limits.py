"""Limits: defaults, replace(), and refusal of values that make no sense."""

from __future__ import annotations

import dataclasses

import pytest

from wirekit import DEFAULT_LIMITS, Limits


def test_replace_changes_one_limit_and_keeps_the_rest() -> None:
    changed = DEFAULT_LIMITS.replace(max_frame_size=4096)
    assert changed.max_frame_size == 4096
    assert changed.idle_timeout == DEFAULT_LIMITS.idle_timeout
    assert DEFAULT_LIMITS.max_frame_size == 1 << 20


def test_limits_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_frame_size = 1  # type: ignore[misc]


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Limits)])
def test_negative_values_are_refused_with_the_field_name(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: -1})


@pytest.mark.parametrize(
    ("size", "ok"), [(1, True), (2**32 - 1, True), (0, False), (2**32, False)]
)
def test_max_frame_size_must_fit_the_32_bit_length_field(size: int, ok: bool) -> None:
    if ok:
        assert Limits(max_frame_size=size).max_frame_size == size
    else:
        with pytest.raises(ValueError, match="max_frame_size"):
            Limits(max_frame_size=size)
