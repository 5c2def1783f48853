"""Tables as data (caption, header, rows of strings), rendered to Markdown, CSV or HTML."""
from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        """A GitHub-flavoured Markdown table with its caption (bold) and note (italics)."""
        def esc(s):
            return str(s).replace("|", "\\|")
        lines = [f"**{self.caption}**", "", "| " + " | ".join(map(esc, self.header)) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", f"_{self.note}_"]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """An HTML <table> with a <caption>."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return (f"<table><caption>{html.escape(self.caption)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>{note}")


def to_csv(rows: list[dict]) -> str:
    """Dict rows as CSV text (columns from the first row, then any new keys in order)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def fmt(x: float | None, digits: int = 2) -> str:
    """A number for a table: '-' for missing/nan."""
    if x is None or x != x:
        return "-"
    return f"{x:.{digits}f}"
