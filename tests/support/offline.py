"""Open pages in headless Chromium with the network blocked, and report what went wrong."""

from __future__ import annotations

from dataclasses import dataclass, field

LOCAL = ("file://", "data:", "blob:", "http://127.0.0.1", "http://localhost", "about:")


OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) {
  return attach.call(this, Object.assign({}, init, {mode: "open"}));
};
"""


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # requests that tried to leave the machine
    failed: list[str] = field(default_factory=list)   # local requests that failed

    @property
    def problems(self) -> list[str]:
        return ([f"console error: {e}" for e in self.console_errors]
                + [f"page error: {e}" for e in self.page_errors]
                + [f"tried the network: {u}" for u in self.blocked]
                + [f"failed to load: {u}" for u in self.failed])


def offline_page(browser, report: PageReport, viewport=(1200, 900)):
    """A new page whose every non-local request is aborted and recorded in ``report``."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    # Material draws mermaid diagrams into a *closed* shadow root; open it so tests can see
    # the SVG (nothing else changes)
    context.add_init_script(OPEN_SHADOW_ROOTS)
    page = context.new_page()

    def route(r):
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            report.blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: report.console_errors.append(m.text)
            if m.type == "error" else None)
    page.on("pageerror", lambda e: report.page_errors.append(str(e)))
    page.on("requestfailed", lambda r: report.failed.append(f"{r.url} ({r.failure})")
            if r.url.startswith(LOCAL) else None)
    return page
