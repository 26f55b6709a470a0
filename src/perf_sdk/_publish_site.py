"""The services list: every service's KPIs side by side, sortable and filterable without JavaScript.

A static site cannot read a query string, so every order a reader can ask for
is written out in advance: ``index.html`` is by service name, and
``sorted/<column>-<ascending|descending>.html`` holds each other order (the
column headings link to them, ``aria-sort`` says which is in force). Filtering
works the same way, one page per organisation under ``organisations/``. A few
lines of script, when it runs, add a search box that hides rows as you type;
nothing depends on it.

Each row's HTML is built once and the pages join the rows in their own order,
so 1,000 services and 15 pages costs string joins, not rendering.

On a phone (narrower than :data:`NARROW`) the table would scroll sideways, so
there it is drawn as a card per service, by CSS alone: each cell on its own
line, named by its column through generated content (``td:nth-of-type(n)``,
from :data:`COLUMNS`: no byte more per row), and the column headings become
the "Sort by" links above the cards. The markup stays the same table, so a
screen reader still announces each cell's column heading; the generated names
carry empty alternative text (``content: "..." / ""``) so they are not read
twice.
"""

from __future__ import annotations

import hashlib
import html
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from perf_sdk._kpi import KPI_KEYS, KPI_NAMES, format_value
from perf_sdk._publish_files import ServiceInfo

__all__ = ["COLUMNS", "ListRow", "list_pages", "org_slug"]

#: Column key -> heading; KPI keys, then the volume.
COLUMNS: Final[Mapping[str, str]] = {
    "service": "Service",
    "organisation": "Organisation",
    **{k: KPI_NAMES[k] for k in KPI_KEYS},
    "transactions_per_year": "Transactions per year",
}
#: Below this width the list is a card per service instead of a table that scrolls sideways.
NARROW: Final = "40em"
#: Which way is better, for ranks: a lower cost per transaction ranks first.
LOWER_IS_BETTER: Final = frozenset({"cost_per_transaction"})
#: An organisation page's name at most (bytes).
_MAX_SLUG_BYTES: Final = 100


@dataclass(frozen=True)
class ListRow:
    """One service's line in the list."""

    info: ServiceInfo
    values: Mapping[str, float | None]
    changes: Mapping[str, float | None]
    transactions_per_year: int | None


def org_slug(organisation: str) -> str:
    """The organisation's page name: its words joined by ``-``, at most 100 bytes (a file name's limit is 255).

    A longer name keeps its first 90 bytes and gains 8 hex characters of its hash, so two long names
    that begin alike still get pages of their own.
    """
    slug = "".join(ch if ch.isalnum() else "-" for ch in organisation.lower())
    slug = "-".join(part for part in slug.split("-") if part) or "none"
    if len(slug.encode("utf-8")) <= _MAX_SLUG_BYTES:
        return slug
    digest = hashlib.sha256(organisation.encode("utf-8", "replace")).hexdigest()[:8]
    return slug.encode("utf-8")[: _MAX_SLUG_BYTES - 10].decode("utf-8", "ignore").rstrip("-") + "-" + digest


def org_slugs(organisations: Sequence[str]) -> dict[str, str]:
    """Each organisation's page name, unique in the site: "Marine & Fisheries Agency" and "Marine Fisheries
    Agency" both make ``marine-fisheries-agency``, and one page would list the other's services. The first, in
    sorted order, keeps the plain name; the others get ``-2``, ``-3``."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for organisation in sorted(set(organisations)):
        base = slug = org_slug(organisation)
        n = 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        out[organisation] = slug
    return out


def _change(key: str, change: float | None) -> str:
    if change is None:
        return ""
    if key == "cost_per_transaction":
        size = round(abs(change) / 100, 2)
        text = f"£{size:,.2f}"
    else:
        size = round(abs(change) * 100, 1)
        text = f"{size:.1f} pts"
    if size == 0:
        return '<br><span class="c">no change</span>'
    return f'<br><span class="c">{"up" if change > 0 else "down"} {text}</span>'


def _row_cells(row: ListRow, prefix: str) -> str:
    esc = html.escape
    cells = [
        f'<th scope="row"><a href="{prefix}{esc(row.info.slug)}/index.html">{esc(row.info.title)}</a></th>',
        f"<td>{esc(row.info.organisation)}</td>",
    ]
    for key in KPI_KEYS:
        cells.append(f'<td class="n">{format_value(key, row.values.get(key))}{_change(key, row.changes.get(key))}</td>')
    volume = row.transactions_per_year
    cells.append(f'<td class="n">{"unknown" if volume is None else f"{volume:,}"}</td>')
    return "".join(cells)


def _sort_value(row: ListRow, column: str) -> Any:
    if column == "service":
        return row.info.title.casefold()
    if column == "organisation":
        return row.info.organisation.casefold()
    if column == "transactions_per_year":
        return row.transactions_per_year
    return row.values.get(column)


def _ordered(rows: Sequence[ListRow], column: str, descending: bool) -> list[int]:
    """Row indexes in order; unknown values last whichever the direction, ties by service name."""
    known = [i for i, r in enumerate(rows) if _sort_value(r, column) not in (None, "")]
    unknown = [i for i, r in enumerate(rows) if _sort_value(r, column) in (None, "")]
    by_name = sorted(range(len(rows)), key=lambda i: (rows[i].info.title.casefold(), rows[i].info.slug))
    position = {i: n for n, i in enumerate(by_name)}
    known.sort(key=lambda i: position[i])
    known.sort(key=lambda i: _sort_value(rows[i], column), reverse=descending)
    unknown.sort(key=lambda i: position[i])
    return known + unknown


def _page_name(column: str, descending: bool) -> str:
    if column == "service" and not descending:
        return "index.html"
    return f"sorted/{column.replace('_', '-')}-{'descending' if descending else 'ascending'}.html"


def list_pages(
    rows: Sequence[ListRow],
    *,
    period_name: str,
    medians: Mapping[str, float | None],
    head: str,
    intro: str,
    footer: str,
) -> dict[str, str]:
    """Every page of the list: ``{path relative to the site root: html}``."""
    out: dict[str, str] = {}
    organisations = sorted({r.info.organisation for r in rows if r.info.organisation}, key=str.casefold)
    slugs = org_slugs(organisations)
    cells: dict[str, list[str]] = {}
    navs: dict[str, str] = {}
    filters = _filters(rows, medians)
    for prefix in ("", "../"):
        cells[prefix] = [_row_cells(r, prefix) for r in rows]
        navs[prefix] = _nav(prefix, organisations, slugs, filters)
    for column in COLUMNS:
        for descending in (False, True):
            name = _page_name(column, descending)
            prefix = "../" if "/" in name else ""
            order = _ordered(rows, column, descending)
            rank = column in KPI_KEYS or column == "transactions_per_year"
            out[name] = _page(
                rows,
                order,
                cells[prefix],
                prefix=prefix,
                column=column,
                descending=descending,
                rank=rank,
                nav=navs[prefix],
                period_name=period_name,
                medians=medians,
                head=head,
                intro=intro,
                footer=footer,
                heading=None,
            )
    for organisation in organisations:
        order = [i for i in _ordered(rows, "service", False) if rows[i].info.organisation == organisation]
        out[f"organisations/{slugs[organisation]}.html"] = _page(
            rows,
            order,
            cells["../"],
            prefix="../",
            column="service",
            descending=False,
            rank=False,
            nav=navs["../"],
            period_name=period_name,
            medians=medians,
            head=head,
            intro=intro,
            footer=footer,
            heading=organisation,
        )
    for path, heading, key, keep in filters:
        order = [i for i in _ordered(rows, key, key not in LOWER_IS_BETTER) if keep(rows[i])]
        out[path] = _page(
            rows,
            order,
            cells["../"],
            prefix="../",
            column=key,
            descending=key not in LOWER_IS_BETTER,
            rank=False,
            nav=navs["../"],
            period_name=period_name,
            medians=medians,
            head=head,
            intro=intro,
            footer=footer,
            heading=heading,
        )
    return out


_Filter = tuple[str, str, str, Callable[[ListRow], bool]]


def _filters(rows: Sequence[ListRow], medians: Mapping[str, float | None]) -> list[_Filter]:
    """Pages of the services above and below the median of each figure: filtering by a number, without script."""
    out: list[_Filter] = []
    volumes = [r.transactions_per_year for r in rows if r.transactions_per_year is not None]
    middle = {**medians, "transactions_per_year": statistics.median(volumes) if volumes else None}
    for key in (*KPI_KEYS, "transactions_per_year"):
        median = middle.get(key)
        if median is None:
            continue
        shown = f"{median:,.0f}" if key == "transactions_per_year" else format_value(key, median)
        slug = key.replace("_", "-")
        for side in ("above", "below"):

            def keep(row: ListRow, key: str = key, median: float = median, side: str = side) -> bool:
                value = _sort_value(row, key)
                return value is not None and (value > median if side == "above" else value < median)

            out.append(
                (f"filtered/{slug}-{side}-median.html", f"{COLUMNS[key]} {side} the median ({shown})", key, keep)
            )
    return out


def _nav(prefix: str, organisations: Sequence[str], slugs: Mapping[str, str], filters: Sequence[_Filter]) -> str:
    esc = html.escape
    orgs = "".join(f'<li><a href="{prefix}organisations/{slugs[o]}.html">{esc(o)}</a></li>' for o in organisations)
    figures = "".join(f'<li><a href="{prefix}{path}">{esc(heading)}</a></li>' for path, heading, _, _ in filters)
    return (
        '<nav aria-label="Filter the services"><details class="orgs"><summary>Filter by organisation</summary>'
        f"<ul>{orgs}</ul></details>"
        '<details class="orgs"><summary>Filter by figure: above or below the median</summary>'
        f"<ul>{figures}</ul></details></nav>"
    )


def _headings(column: str, descending: bool, prefix: str, rank: bool, sortable: bool) -> str:
    out = ['<th scope="col">Rank</th>'] if rank else []
    for key, words in COLUMNS.items():
        current = key == column
        target = _page_name(key, not descending if current else key not in ("service", "organisation"))
        sort = f' aria-sort="{"descending" if descending else "ascending"}"' if current else ""
        css = ' class="n"' if key not in ("service", "organisation") else ""
        if sortable:
            hint = f"{', sorted ' + ('descending' if descending else 'ascending') if current else ''}"
            label = f'<a href="{prefix}{target}">{html.escape(words)}<span class="vh">{hint}</span></a>'
        else:
            label = html.escape(words)
        out.append(f'<th scope="col"{css}{sort}>{label}</th>')
    return "".join(out)


def _page(
    rows: Sequence[ListRow],
    order: Sequence[int],
    cells: Sequence[str],
    *,
    prefix: str,
    column: str,
    descending: bool,
    rank: bool,
    nav: str,
    period_name: str,
    medians: Mapping[str, float | None],
    head: str,
    intro: str,
    footer: str,
    heading: str | None,
) -> str:
    esc = html.escape
    body = []
    n = 0
    for i in order:
        known = rank and _sort_value(rows[i], column) is not None
        n += 1 if known else 0
        first = f'<td class="n">{n if known else "-"}</td>' if rank else ""
        body.append(f"<tr>{first}{cells[i]}</tr>")
    median_cells = "".join(f'<td class="n">{format_value(k, medians.get(k))}</td>' for k in KPI_KEYS)
    foot = (
        f'<tfoot><tr>{"<td></td>" if rank else ""}<th scope="row">Median across services</th><td></td>'
        f"{median_cells}<td></td></tr></tfoot>"
    )
    sorted_by = f"{COLUMNS[column]}, {'highest' if descending else 'lowest'} first"
    if column in ("service", "organisation"):
        sorted_by = f"{COLUMNS[column]}, {'Z to A' if descending else 'A to Z'}"
    title = f"{heading}: services" if heading else "Service performance"
    caption = f"{len(order):,} services, {esc(period_name)}. Sorted by {esc(sorted_by)}."
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en-GB">',
                "<head>",
                '<meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{esc(title)}</title>",
                head,
                "</head>",
                "<body>",
                '<a class="skip-link" href="#main">Skip to main content</a>',
                '<header class="masthead"><div class="width">',
                '<p class="eyebrow">Digital service performance</p>',
                f"<h1>{esc(title)}</h1>",
                f'<p class="meta">{intro}</p>',
                "</div></header>",
                '<main id="main" class="width" tabindex="-1">',
                (f'<p><a href="{prefix}index.html">All services</a></p>' if heading else ""),
                nav,
                '<div id="filter"></div>',
                '<div class="table-wrap" role="region" aria-labelledby="list-caption" tabindex="0">',
                f'<table class="{_table_class(rank, sortable=heading is None)}">'
                f'<caption id="list-caption">{caption}</caption>',
                f"<thead><tr>{_headings(column, descending, prefix, rank, sortable=heading is None)}</tr></thead>",
                f"<tbody>{''.join(body)}</tbody>{foot}</table></div>",
                "</main>",
                footer,
                _SCRIPT,
                "</body>",
                "</html>",
            ]
        )
        + "\n"
    )


def _table_class(rank: bool, *, sortable: bool) -> str:
    """``list``, and ``ranked`` (a Rank column first) / ``sortable`` (headings that link): the phone layout reads them."""
    return " ".join(["list", *(["ranked"] if rank else []), *(["sortable"] if sortable else [])])


def _stacked_css() -> str:
    """The phone layout: a card per row, each cell named by its column (see the module docstring)."""
    labels = []
    for ranked in (False, True):
        names = [*(["Rank"] if ranked else []), *(words for key, words in COLUMNS.items() if key != "service")]
        scope = "table.list.ranked" if ranked else "table.list"
        for n, words in enumerate(names, 1):
            assert '"' not in words and "\\" not in words, words  # a CSS string as it stands
            labels.append(f'{scope} td:nth-of-type({n})::before{{content:"{words}";content:"{words}"/""}}')
    hidden = "position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap"
    return (
        f"@media (max-width:{NARROW}){{"
        "table.list,table.list tbody,table.list tfoot,table.list tr,table.list th,table.list td{display:block}"
        "table.list caption{display:block;max-width:none}"
        "table.list thead{display:block;border-bottom:2px solid #0b0c0c;padding-bottom:6px}"
        "table.list thead tr{display:flex;flex-wrap:wrap;gap:0 16px;align-items:baseline}"
        'table.list.sortable thead tr::before{content:"Sort by";content:"Sort by"/"";font-weight:700}'
        "table.list thead th{border:0;padding:4px 0;text-align:left}"
        f"table.list:not(.sortable) thead,table.list.ranked thead th:first-child{{{hidden}}}"
        "table.list tbody tr,table.list tfoot tr{border-bottom:1px solid #b1b4b6;padding:10px 0}"
        "table.list tfoot tr{border-bottom:2px solid #0b0c0c}"
        "table.list tbody th,table.list tfoot th{position:static;min-width:0;border:0;padding:0 0 4px;"
        "font-size:1.1875rem;overflow-wrap:anywhere}"
        "table.list td,table.list td.n{display:flow-root;border:0;padding:2px 0;text-align:right;"
        "overflow-wrap:anywhere}"
        "table.list td::before{float:left;font-weight:700;text-align:left;padding-right:1em}"
        "table.list td:empty{display:none}"
        "table.list .c{white-space:normal}" + "".join(labels) + "}"
    )


#: The progressive enhancement: a search box, added only when script runs.
_SCRIPT: Final = """<script>
(function(){var h=document.getElementById("filter");if(!h||!document.querySelector)return;
h.innerHTML='<label for="q">Filter services by name or organisation</label><input id="q" type="search" autocomplete="off">'
+'<p id="q-status" role="status" class="meta-dark"></p>';var q=document.getElementById("q"),s=document.getElementById("q-status"),
r=document.querySelectorAll("table.list tbody tr");q.addEventListener("input",function(){var t=q.value.toLowerCase(),n=0;
for(var i=0;i<r.length;i++){var m=r[i].textContent.toLowerCase().indexOf(t)>=0;r[i].hidden=!m;if(m)n++;}
s.textContent=t?n+" services match":"";});})();
</script>"""

LIST_CSS: Final = (
    """
.vh{position:absolute!important;width:1px!important;height:1px!important;margin:0!important;padding:0!important;
overflow:hidden!important;clip:rect(0 0 0 0)!important;white-space:nowrap!important;border:0!important}
.table-wrap{position:relative}
table.list caption{max-width:calc(100vw - 30px)}
table.list th,table.list td{padding:8px 10px 8px 0}
table.list tbody th{position:sticky;left:0;background:#fff;z-index:1;min-width:8em}
table.list td.n,table.list th.n{text-align:right;font-variant-numeric:tabular-nums}
table.list thead th a{font-weight:700}
table.list th[aria-sort] a::after{content:" \\25BC"}
table.list th[aria-sort=ascending] a::after{content:" \\25B2"}
.c{color:#505a5f;font-size:.875rem;white-space:nowrap}
tfoot th,tfoot td{font-weight:700;border-top:2px solid #0b0c0c}
.orgs{margin:6px 0}
.orgs summary{cursor:pointer;color:#1d70b8;text-decoration:underline;padding:6px 0;min-height:24px}
.orgs ul{columns:2 260px;padding-left:20px}
#filter label{display:block;font-weight:700;margin:15px 0 5px}
#filter input{font:inherit;padding:5px;border:2px solid #0b0c0c;width:100%;max-width:30em}
.meta-dark{color:#505a5f;margin:5px 0 0;min-height:1.4em}
"""
    + _stacked_css()
    + "\n"
)
