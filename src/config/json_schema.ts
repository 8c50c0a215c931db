/**
 * The JSON Schema that `config.json` names in `$schema`, derived from the zod schema.
 * @module
 */
import { z } from "zod";
import type { ConfigContext } from "./load.ts";
import { configSchema, pickerSchema } from "./schema.ts";

/**
 * The config's JSON Schema (input side: durations as strings), with the registered pickers in
 * `context` as the `enum` of every cluster's `picker`.
 */
export function configJsonSchema(context: ConfigContext): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, {
    io: "input",
    unrepresentable: "any",
    override: ({ zodSchema, jsonSchema }) => {
      if (zodSchema === pickerSchema) jsonSchema.enum = [...context.pickers];
    },
  });
  return { ...schema, title: "Switchyard config.json" };
}

/** Renders {@link configJsonSchema} as formatted JSON. */
export function renderConfigJsonSchema(context: ConfigContext): string {
  return JSON.stringify(configJsonSchema(context), null, 2) + "\n";
}
