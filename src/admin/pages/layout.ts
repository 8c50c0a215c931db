/**
 * The HTML frame shared by the admin's pages. Self-contained (no CDN, no external fonts),
 * because the admin listener often runs where there is no outside network.
 * @module
 */
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

const STYLE = `
  :root { font-family: system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
  body { margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem; }
  h1 { font-size: 1.4rem; margin: 0.2rem 0 1rem; }
  h2 { font-size: 1.1rem; margin: 0; }
  nav a { margin-right: 1rem; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; margin: 0 0 1rem;
    padding: 0.8rem 1rem; }
  table { border-collapse: collapse; width: 100%; font-size: 0.9rem; margin-top: 0.6rem; }
  th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #eceff3; }
  th { color: #5b6474; font-weight: 600; }
  code { font-family: ui-monospace, monospace; }
  .badge { display: inline-block; border-radius: 4px; padding: 0.05rem 0.45rem;
    font-size: 0.8rem; font-weight: 600; color: #fff; background: #7a8496; }
  .ok { background: #1f9d55; } .warn { background: #d69e2e; } .bad { background: #d64545; }
  .off { background: #5a67d8; } .muted { color: #7a8496; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr));
    gap: 0.6rem 1.2rem; margin: 0.6rem 0; }
  .chart { margin: 0; }
  .chart figcaption { font-size: 0.85rem; margin-bottom: 0.2rem; }
  .chart svg { display: block; width: 100%; height: auto; }
  svg .tick { font-size: 10px; fill: #5b6474; }
  .key { white-space: nowrap; font-size: 0.85rem; }
  .key::before { content: ""; display: inline-block; width: 0.7em; height: 0.7em;
    border-radius: 2px; margin-right: 0.3em; background: var(--key); }
  .share { display: inline-block; vertical-align: middle; width: 7rem; height: 0.7rem;
    margin-right: 0.5rem; border-radius: 3px; overflow: hidden; background: #eceff3; }
  .share span { display: block; height: 100%; background: #2b6cb0; }
  .timeline { display: block; width: 100%; min-width: 12rem; height: 16px; }
  table.history td:last-child { width: 55%; }
  .legend { font-size: 0.8rem; margin: 0.3rem 0 0.4rem; }
`;

/** Rendered HTML, as Hono's `html` template tag produces it. */
export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** Wraps `body` in a complete page titled `title`. */
export function page(title: string, body: Html): Html {
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>${title}</title>
        <style>${raw(STYLE)}</style>
      </head>
      <body>
    <nav><a href="./">Status</a><a href="./docs">API docs</a><a href="./metrics">Metrics</a></nav>
    <h1>${title}</h1>
    ${body}
      </body>
    </html>
  `;
}
