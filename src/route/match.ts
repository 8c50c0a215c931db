/**
 * Route conditions beyond the path: the `:authority` and request headers, compiled once when
 * the routes are built. A header condition reads the header's first value, as gRPC metadata
 * matchers do.
 * @module
 */
import type { AuthorityMatchConfig, HeaderMatchConfig } from "../config/schema.ts";
import { type HeaderList, headerValue } from "../transport/stream.ts";

/** Tests one header value. */
type ValueTest = (value: string) => boolean;

function valueTest(config: AuthorityMatchConfig): ValueTest {
  const { exact, prefix, suffix, regex } = config;
  if (exact !== undefined) return (value) => value === exact;
  if (prefix !== undefined) return (value) => value.startsWith(prefix);
  if (suffix !== undefined) return (value) => value.endsWith(suffix);
  // The whole value must match, as Envoy's safe_regex does; a pattern is not a substring search.
  const pattern = new RegExp(`^(?:${regex})$`);
  return (value) => pattern.test(value);
}

/** One condition on the request headers. */
interface Condition {
  readonly name: string;
  /** `undefined`: the header must be present (with `present: true`) or absent. */
  readonly test: ValueTest | undefined;
  readonly present: boolean;
}

/** The conditions of one route; all must hold. */
export class RouteConditions {
  readonly #conditions: readonly Condition[];

  /** Compiles a route's `authority` and `headers` matchers. */
  constructor(authority: AuthorityMatchConfig | undefined, headers: readonly HeaderMatchConfig[]) {
    const conditions: Condition[] = [];
    if (authority) {
      conditions.push({ name: ":authority", test: valueTest(authority), present: true });
    }
    for (const header of headers) {
      conditions.push(
        header.present === undefined
          ? { name: header.name, test: valueTest(header), present: true }
          : { name: header.name, test: undefined, present: header.present },
      );
    }
    this.#conditions = conditions;
  }

  /** How many conditions there are: a route with more is more specific. */
  get count(): number {
    return this.#conditions.length;
  }

  /** True when every condition holds for `headers`. */
  matches(headers: HeaderList): boolean {
    for (const condition of this.#conditions) {
      const value = headerValue(headers, condition.name);
      if (value === undefined) {
        if (condition.present) return false;
      } else if (!condition.present || (condition.test !== undefined && !condition.test(value))) {
        return false;
      }
    }
    return true;
  }
}
