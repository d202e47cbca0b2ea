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


@pytest.mark.parametrize(("size", "ok"), [(1, True), (2**32 - 1, True), (0, False), (2**32, False)])
def test_max_frame_size_must_fit_the_32_bit_length_field(size: int, ok: bool) -> None:
    if ok:
        assert Limits(max_frame_size=size).max_frame_size == size
    else:
        with pytest.raises(ValueError, match="max_frame_size"):
            Limits(max_frame_size=size)


@pytest.mark.parametrize(
    "field",
    [
        "max_connections",
        "max_connections_per_ip",
        "write_high_water",
        "read_high_water",
        "max_line_length",
        "max_datagram_size",
    ],
)
def test_zero_is_refused_where_it_would_make_the_service_unusable(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be at least 1"):
        Limits(**{field: 0})
    assert getattr(Limits(**{field: 1}), field) == 1


@pytest.mark.parametrize("field", ["handshake_timeout", "idle_timeout", "shutdown_grace"])
def test_zero_means_never_or_at_once_for_timeouts(field: str) -> None:
    assert getattr(Limits(**{field: 0}), field) == 0
