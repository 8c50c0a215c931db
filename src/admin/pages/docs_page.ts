/**
 * `/docs`: a readable listing of the OpenAPI document, rendered on the server so it needs
 * no JavaScript bundle or CDN. `/openapi.json` is the machine-readable source.
 * @module
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { html } from "hono/html";
import { type Html, page } from "./layout.ts";

/** The OpenAPI 3.1 document the admin application generates. */
export type OpenApiDocument = ReturnType<OpenAPIHono["getOpenAPI31Document"]>;

type Operation = NonNullable<NonNullable<OpenApiDocument["paths"]>[string]["get"]>;

const METHODS = ["get", "put", "post", "delete", "patch"] as const;

/** Renders every operation of `document`, in path order. */
export function renderDocsPage(document: OpenApiDocument): Html {
  const rows = Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    METHODS.flatMap((method) => {
      const operation = item[method];
      if (!operation) return [];
      return [html`<tr>
  <td><span class="badge ${method === "get" ? "ok" : "warn"}">${method.toUpperCase()}</span></td>
  <td><code>${path}</code></td>
  <td>${operation.summary ?? ""}${describeInput(operation)}</td>
  <td>${responseCodes(operation)}</td>
</tr>`];
    })
  );
  return page(
    `${document.info.title} ${document.info.version}`,
    html`
      <section>
        <p>The machine-readable document is <a href="./openapi.json"><code>/openapi.json</code></a>.
      Send <code>Authorization: Bearer &lt;token&gt;</code> when a token is configured.</p>
        <table>
          <thead>
            <tr>
              <th>Method</th>
              <th>Path</th>
              <th>Operation</th>
              <th>Responses</th>
            </tr>
          </thead>
          <tbody>${rows}</tbody>
        </table>
      </section>
    `,
  );
}

function describeInput(operation: Operation): Html | string {
  const params = (operation.parameters ?? [])
    .flatMap((parameter) => "name" in parameter ? [`${parameter.in} ${parameter.name}`] : [])
    .join(", ");
  const body = operation.requestBody ? " JSON body (schema in /openapi.json)." : "";
  if (!body && !params) return "";
  return html`<br><span class="muted">${params ? `Parameters: ${params}.` : ""}${body}</span>`;
}

function responseCodes(operation: Operation): string {
  return Object.entries(operation.responses ?? {})
    .map(([code, response]) => `${code} ${"description" in response ? response.description : ""}`)
    .join("; ");
}
