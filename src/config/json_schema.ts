/**
 * The JSON Schema that `config.json` names in `$schema`, derived from the zod schema.
 * @module
 */
import { z } from "zod";
import { configSchema } from "./schema.ts";

/** Renders the config's JSON Schema (input side: durations as strings) as formatted JSON. */
export function renderConfigJsonSchema(): string {
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
  return JSON.stringify({ ...schema, title: "Switchyard config.json" }, null, 2) + "\n";
}
