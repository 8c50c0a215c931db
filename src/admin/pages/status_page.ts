/**
 * `GET /`: the live status page. The HTML is a static shell; its script fills in the
 * clusters from the JSON API, so the shell itself carries no state.
 * @module
 */
import { html, raw } from "hono/html";
import { type Html, page } from "./layout.ts";
import { STATUS_PAGE_SCRIPT } from "./status_script.ts";

/** Renders the status page shell. */
export function renderStatusPage(): Html {
  return page(
    "Switchyard status",
    html`<p id="updated" class="muted">Loading…</p>
<div id="clusters"></div>
<script>${raw(STATUS_PAGE_SCRIPT)}</script>`,
  );
}
