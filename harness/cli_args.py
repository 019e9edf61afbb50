"""argparse value parsers shared by the commands: positive integers and comma lists of them."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """'1,16,128' -> (1, 16, 128); duplicates dropped, order kept."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list of positive integers")
    return tuple(dict.fromkeys(positive_int(part) for part in parts))
