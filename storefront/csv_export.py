"""CSV for merchants' spreadsheets: the one way the shop writes CSV.

Any cell may hold text from outside (an imported note, a key, a shopper's name), and a spreadsheet runs a cell
that starts with = + - @ (or a tab or carriage return in front of one) as a formula: `=cmd|' /C calc'!A0` in a
note would run on the merchant's machine. Following OWASP's CSV Injection advice, such a cell, and one whose
first character after leading whitespace is one of those, is written with a single quote in front, which
spreadsheets read as "text". Every other cell is written exactly as it is.
"""

import csv
from collections.abc import Iterable
from typing import Any

FORMULA_TRIGGERS = frozenset("=+-@\t\r")


def spreadsheet_safe(value: Any) -> str:
    """`value` as text that no spreadsheet will read as a formula (None is an empty cell)."""
    text = "" if value is None else str(value)
    if text[:1] in FORMULA_TRIGGERS or text.lstrip()[:1] in FORMULA_TRIGGERS:
        return "'" + text
    return text


class SpreadsheetSafeWriter:
    """csv.writer's writerow/writerows, with every cell passed through spreadsheet_safe first."""

    def __init__(self, stream, **kwargs):
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([spreadsheet_safe(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream, **kwargs) -> SpreadsheetSafeWriter:
    """A CSV writer for files a merchant opens in a spreadsheet; takes csv.writer's arguments."""
    return SpreadsheetSafeWriter(stream, **kwargs)
