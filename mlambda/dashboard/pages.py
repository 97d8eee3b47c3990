"""The dashboard's HTML: small shells with no inline script or style. Values reach
the page's script through `data-` attributes; everything is escaped here."""

from __future__ import annotations

from html import escape

from mlambda.dashboard.assets import url

RANGES = (("15m", "15 min"), ("1h", "1 h"), ("6h", "6 h"), ("24h", "24 h"), ("7d", "7 d"),
          ("30d", "30 d"))


def _attrs(data: dict[str, str]) -> str:
    return "".join(f' data-{k}="{escape(v)}"' for k, v in data.items())


def layout(title: str, page: str, body: str, csrf: str | None,
           data: dict[str, str] | None = None) -> str:
    nav = ""
    if csrf is not None:
        nav = (
            '<nav><a href="/dashboard/">Functions</a><a href="/dashboard/models">Models</a>'
            '<form method="post" action="/dashboard/signout" class="signout">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            '<button type="submit" id="signout">Sign out</button></form></nav>'
        )
    vendor = ""
    if page == "function":
        vendor = (f'<link rel="stylesheet" href="{url("vendor/uPlot.min.css")}">'
                  f'<script src="{url("vendor/uPlot.iife.min.js")}" defer></script>')
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · mlambda</title><link rel=\"icon\" href=\"data:,\">"
        f'<link rel="stylesheet" href="{url("dashboard.css")}">{vendor}'
        f'<script src="{url("dashboard.js")}" defer></script></head>'
        f'<body data-page="{page}"{_attrs(data or {})}>'
        f'<header><a class="brand" href="/dashboard/">mlambda</a>{nav}</header>'
        f"<main>{body}</main></body></html>"
    )


def signin(csrf: str, error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        '<section class="signin"><h1>Sign in</h1>'
        "<p>Use an admin API key (the server wrote the first one to "
        "<code>admin.key</code> in its data directory).</p>"
        f"{problem}"
        '<form method="post" action="/dashboard/signin">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<label for="key">Admin key</label>'
        '<input id="key" name="key" type="password" autocomplete="current-password" required>'
        '<button type="submit" id="signin">Sign in</button></form></section>'
    )
    return layout("Sign in", "signin", body, None)


def overview(csrf: str) -> str:
    body = (
        '<h1>Functions</h1><p class="muted" id="updated"></p>'
        '<div class="scroll"><table id="overview"><thead><tr><th>Function</th>'
        '<th class="num">Requests/s</th><th class="num">Errors (1 min)</th>'
        '<th class="num">p99 (ms)</th><th class="num">Instances</th>'
        '<th class="num">Cost today ($)</th></tr></thead><tbody></tbody></table></div>'
        '<h2>Cost of the last 30 days</h2><p class="muted" id="cost-note"></p>'
        '<div class="scroll"><table id="cost"><thead><tr><th>Running it on</th>'
        '<th class="num">These 30 days ($)</th><th class="num">A month at this rate ($)</th>'
        "</tr></thead><tbody></tbody></table></div>"
    )
    return layout("Functions", "overview", body, csrf)


def function(csrf: str, name: str) -> str:
    ranges = "".join(f'<button type="button" data-range="{r}">{label}</button>'
                     for r, label in RANGES)
    charts = "".join(
        f'<figure class="chart" id="chart-{cid}"><figcaption>{title}</figcaption></figure>'
        for cid, title in (("invocations", "Invocations"), ("errors", "Errors and throttles"),
                           ("duration", "Duration p50 / p99 (ms)"),
                           ("concurrency", "Concurrency and instances"),
                           ("coldstarts", "Cold starts"), ("batch", "Batch size")))
    body = (
        f"<h1>{escape(name)}</h1>"
        f'<div class="ranges" role="group" aria-label="time range">{ranges}</div>'
        '<p class="muted" id="chart-status"></p>'
        f'<section class="charts">{charts}</section>'
        '<section class="cols"><div><h2>Aliases</h2><div class="scroll"><table id="aliases">'
        "<thead><tr><th>Alias</th><th>Version</th><th>Canary</th><th class=\"num\">Weight"
        "</th></tr></thead><tbody></tbody></table></div></div>"
        '<div><h2>Versions</h2><div class="scroll"><table id="versions"><thead><tr>'
        "<th>Version</th><th>sha256</th><th>Instances</th></tr></thead><tbody></tbody>"
        "</table></div></div></section>"
        '<section><h2>Logs</h2><form id="log-search" class="logbar">'
        '<input id="log-filter" name="filter" type="search" placeholder="text in the log">'
        '<input id="log-request" name="request_id" type="search" placeholder="request id">'
        '<button type="submit">Search</button>'
        '<button type="button" id="log-tail" aria-pressed="false">Live tail</button></form>'
        '<p class="muted" id="log-status"></p><div id="logs" class="logs"></div></section>'
    )
    return layout(name, "function", body, csrf, {"function": name})


def models(csrf: str) -> str:
    body = ('<h1>Models</h1><p class="muted">The shared volume: the current version of '
            "each model, its history and the loads that failed.</p>"
            '<div id="models"></div>')
    return layout("Models", "models", body, csrf)
