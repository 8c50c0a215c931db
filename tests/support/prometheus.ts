/**
 * A strict parser for the Prometheus text exposition format (0.0.4), for asserting that
 * `/metrics` is well-formed and reading sample values.
 * @module
 */

/** One sample line. */
export interface Sample {
  /** Metric name, including `_bucket`/`_sum`/`_count` suffixes. */
  readonly name: string;
  /** Label pairs. */
  readonly labels: Readonly<Record<string, string>>;
  /** The value. */
  readonly value: number;
}

const METRIC_NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_NAME = "[a-zA-Z_][a-zA-Z0-9_]*";
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const LABEL = `${LABEL_NAME}=${LABEL_VALUE}`;
// Prometheus reads values with Go's strconv.ParseFloat, which takes NaN in any case:
// prom-client writes "Nan" for a gauge without data (its event-loop lag before a sample).
const VALUE = "(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|[Nn]a[Nn]|[+-]Inf)";
const SAMPLE_LINE = new RegExp(
  `^(${METRIC_NAME})(?:\\{((?:${LABEL}(?:,${LABEL})*)?,?)\\})? (${VALUE})(?: -?\\d+)?$`,
);
const HELP_LINE = new RegExp(`^# HELP ${METRIC_NAME} .*$`);
const TYPE_LINE = new RegExp(`^# TYPE (${METRIC_NAME}) (counter|gauge|histogram|summary|untyped)$`);
const LABEL_PAIR = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, "g");
const SUFFIXES = ["_bucket", "_sum", "_count"];

/**
 * Parses exposition text; throws naming the first line that breaks the grammar, or a sample
 * whose metric family has no `# TYPE` line before it.
 */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  text.split("\n").forEach((line, index) => {
    if (line === "") return;
    if (line.startsWith("#")) {
      const type = TYPE_LINE.exec(line);
      if (type) types.set(type[1], type[2]);
      else if (line.startsWith("# HELP") && !HELP_LINE.test(line)) {
        throw new Error(`line ${index + 1} is a malformed HELP: ${line}`);
      }
      return;
    }
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`line ${index + 1} is not a valid sample: ${line}`);
    const [, name, labelText = "", valueText] = match;
    const family = familyOf(name, types);
    if (!family) throw new Error(`line ${index + 1}: ${name} has no # TYPE before it`);
    const labels: Record<string, string> = {};
    for (const [, key, quoted] of labelText.matchAll(LABEL_PAIR)) labels[key] = JSON.parse(quoted);
    samples.push({
      name,
      labels,
      value: /^nan$/i.test(valueText) ? NaN : Number(valueText.replace("Inf", "Infinity")),
    });
  });
  return samples;
}

function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  const suffix = SUFFIXES.find((s) => name.endsWith(s));
  const base = suffix && name.slice(0, -suffix.length);
  return base && types.get(base) === "histogram" ? base : undefined;
}

/** The sum of every sample named `name` whose labels include `labels`. */
export function sumSamples(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  return samples
    .filter((sample) =>
      sample.name === name &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value)
    )
    .reduce((sum, sample) => sum + sample.value, 0);
}
