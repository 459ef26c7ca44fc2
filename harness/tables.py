"""A results table built once and rendered to Markdown, CSV and HTML (standard library only).

The per-β tables of a run (sweep.md, sweep.csv, the success table of index.html and the lines a run
prints), of a Ray sweep (report.md, report.csv) and of `tools.compare` are each one `Table`; the
renderers here are the only places that lay out Markdown rows, quote CSV fields or escape HTML.

A cell carries its text (Markdown and HTML show it, at the table's precision) and its CSV fields
(full precision, an interval split into its bounds), so that the files of one table cannot disagree.
A column or row may leave a format out: the CSV keeps a fixed header (a selection column that is
empty without selection episodes), while Markdown shows only what the run has.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Sequence

MARKDOWN, CSV, HTML = 'markdown', 'csv', 'html'
EVERY_FORMAT = (MARKDOWN, CSV, HTML)
MISSING = '—'
CSV_DIGITS = 6


@dataclass(frozen=True)
class Column:
    key: str                           # its CSV name when `csv` is empty; data-field on a page
    label: str                         # the Markdown and HTML header
    csv: tuple[str, ...] = ()          # its CSV header fields; (key,) when left empty
    numeric: bool = True               # right-aligned on a page
    formats: tuple[str, ...] = EVERY_FORMAT

    @property
    def csv_names(self) -> tuple[str, ...]:
        return self.csv or (self.key,)


@dataclass(frozen=True)
class Cell:
    text: str = ''
    fields: tuple[str, ...] = ('',)    # one per CSV name of its column
    value: float | None = None         # the exact number a reader of the page can compare (data-value)


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    selected: bool = False             # the β the selection chose, highlighted on a page
    data: dict = field(default_factory=dict)   # data-* attributes of the row on a page
    formats: tuple[str, ...] = EVERY_FORMAT


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]

    def _shown(self, fmt: str) -> tuple[list[Column], list[list[Cell]]]:
        indices = [i for i, column in enumerate(self.columns) if fmt in column.formats]
        rows = [[row.cells[i] for i in indices] for row in self.rows if fmt in row.formats]
        return [self.columns[i] for i in indices], rows

    def markdown(self) -> str:
        columns, rows = self._shown(MARKDOWN)
        lines = [_markdown_line(c.label for c in columns), '|' + '---|' * len(columns)]
        lines += [_markdown_line(cell.text for cell in cells) for cells in rows]
        return '\n'.join(lines) + '\n'

    def csv(self) -> str:
        columns, rows = self._shown(CSV)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator='\n')
        writer.writerow([name for column in columns for name in column.csv_names])
        writer.writerows([field for cell in cells for field in cell.fields] for cells in rows)
        return buffer.getvalue()

    def html(self, css_class: str) -> str:
        """A <table> whose every text is escaped; cells with an exact value name their column and
        hold the value (data-field, data-value), so a reader or a test can check what is shown."""
        columns = [c for c in self.columns if HTML in c.formats]
        indices = [i for i, c in enumerate(self.columns) if HTML in c.formats]
        header = ''.join(f'<th>{_esc(c.label)}</th>' for c in columns)
        body = []
        for row in (r for r in self.rows if HTML in r.formats):
            attributes = ' class="selected"' if row.selected else ''
            attributes += ''.join(f' data-{name}="{_esc(json.dumps(value))}"' for name, value in row.data.items())
            cells = ''.join(_html_cell(self.columns[i], row.cells[i]) for i in indices)
            body.append(f'<tr{attributes}>{cells}</tr>')
        return f'<table class="{_esc(css_class)}"><tr>{header}</tr>{"".join(body)}</table>'


def _markdown_line(texts) -> str:
    return '|' + ''.join(f' {text} |' if text else ' |' for text in texts)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _html_cell(column: Column, cell: Cell) -> str:
    attributes = ' class="num"' if column.numeric else ''
    if cell.value is not None:
        attributes += f' data-field="{_esc(column.key)}" data-value="{_esc(json.dumps(cell.value))}"'
    return f'<td{attributes}>{_esc(cell.text)}</td>'


# ---- typed cells ------------------------------------------------------------------------------------------
def text(value: str, csv_field: str | None = None) -> Cell:
    return Cell(value, (value if csv_field is None else csv_field,))


def csv_only(*fields) -> Cell:
    """A cell of a column only the CSV has."""
    return Cell('', tuple('' if f is None else str(f) for f in fields))


def rate(value: float | None, digits: int = 3) -> Cell:
    """A success rate: its exact value stays on the page (data-value) beside the rounded text."""
    if value is None:
        return Cell(MISSING, ('',))
    return Cell(f'{value:.{digits}f}', (f'{value:.{CSV_DIGITS}f}',), value)


def interval(ci: Sequence[float] | None, digits: int = 3) -> Cell:
    if ci is None:
        return Cell(MISSING, ('', ''))
    low, high = ci
    return Cell(f'[{low:.{digits}f}, {high:.{digits}f}]', (f'{low:.{CSV_DIGITS}f}', f'{high:.{CSV_DIGITS}f}'))


def estimate(value: float, ci: Sequence[float], digits: int = 3) -> Cell:
    """'value [low, high]': a point estimate with its interval (three CSV fields)."""
    bounds = interval(ci, digits)
    return Cell(f'{value:.{digits}f} {bounds.text}', (f'{value:.{CSV_DIGITS}f}', *bounds.fields))


def number(value: float | None, spec: str) -> Cell:
    """A measurement shown with the format `spec` (e.g. '.1f'); none, or not finite, is a dash."""
    if value is None or not math.isfinite(value):
        return Cell(MISSING, ('',))
    return Cell(format(value, spec), (f'{value:.{CSV_DIGITS}g}',))


def count(value: int) -> Cell:
    return Cell(str(value), (str(value),))
