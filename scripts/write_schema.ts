/**
 * Writes `config.schema.json` from the zod schema, so the published JSON Schema never drifts.
 * @module
 */
import { registeredPolicies } from "../src/balancer/registry.ts";
import { renderConfigJsonSchema } from "../src/config/json_schema.ts";

await Deno.writeTextFile(
  new URL("../config.schema.json", import.meta.url),
  renderConfigJsonSchema({ pickers: registeredPolicies() }),
);
