/**
 * The bench scenarios: what one call looks like, which backend answers it, how much
 * concurrency drives it, and which figure it is for.
 * @module
 */
import { frameGrpcMessage } from "./grpc_frame.ts";

/** The two backends the bench starts. */
export type BackendKind = "fast" | "grpcjs";

/**
 * How a call travels: native gRPC over HTTP/2, or gRPC-Web over HTTP/1.1 (as browsers mostly
 * send it), which only this checkout's Switchyard serves, on its `grpcWeb` listener.
 */
export type CallProtocol = "grpc" | "grpc-web";

/** One gRPC call as the load generators send it and the correctness gate checks it. */
export interface CallShape {
  /** How it travels. */
  readonly protocol: CallProtocol;
  /** `:path`. */
  readonly path: string;
  /** Extra request headers (the fast backend's response shape travels in them). */
  readonly headers: Readonly<Record<string, string>>;
  /** The framed request body. */
  readonly body: Uint8Array<ArrayBuffer>;
  /** Response messages a correct call carries. */
  readonly expectedMessages: number;
  /** Payload bytes of each response message. */
  readonly expectedMessageBytes: number;
}

/**
 * What a scenario measures, which decides the load generator and the figures. `idle` makes no
 * calls but the gate's: it opens idle client connections and measures the proxy's memory.
 */
export type ScenarioKind = "latency" | "throughput" | "streaming" | "idle";

/** One benchmark scenario. */
export interface Scenario {
  /** Name used on the command line and in the results. */
  readonly name: ScenarioName;
  /** One line for the table's legend. */
  readonly description: string;
  /** Which backend answers. */
  readonly backend: BackendKind;
  /** The call. */
  readonly shape: CallShape;
  /** What it measures. */
  readonly kind: ScenarioKind;
  /** HTTP/2 connections the load opens (for `idle`, the idle connections). */
  readonly connections: number;
  /** Calls in flight per connection (0 for `idle`). */
  readonly streamsPerConnection: number;
  /** Latency percentiles need per-call timings, which only the built-in generator gives. */
  readonly builtinOnly: boolean;
  /**
   * For a gRPC-Web scenario: the native scenario of the same call, whose proxy CPU per call
   * the report compares it with, target by target.
   */
  readonly nativeScenario?: ScenarioName;
}

/**
 * Every scenario name, in run order. `idle_connections` goes first, on proxies that have not
 * yet grown their heaps under load (free heap would absorb the new connections' memory).
 */
export const SCENARIO_NAMES = [
  "idle_connections",
  "unary_c1",
  "unary_high",
  "grpc_web_unary",
  "many_clients",
  "stream_1k",
  "stream_64k",
  "grpcjs_stream",
] as const;

/** A scenario name. */
export type ScenarioName = typeof SCENARIO_NAMES[number];

/** Tunables of {@link buildScenarios}. */
export interface ScenarioSettings {
  /** Connections for `unary_high`. */
  readonly clients: number;
  /** Streams per connection for `unary_high`. */
  readonly streams: number;
  /** Connections for `many_clients`, one call in flight on each. */
  readonly manyClients: number;
  /** Connections `idle_connections` opens. */
  readonly idleConnections: number;
}

const UNARY_REQUEST = frameGrpcMessage(new TextEncoder().encode("bench unary request"));
const UNARY_RESPONSE_BYTES = 32;
/**
 * Connections for `grpc_web_unary`. HTTP/1.1 carries one call at a time per connection, so
 * this is also its calls in flight.
 */
const GRPC_WEB_CONNECTIONS = 64;

/** The request headers of `shape`'s protocol, then the shape's own. */
export function callHeaders(shape: CallShape): Record<string, string> {
  const protocolHeaders: Record<string, string> = shape.protocol === "grpc-web"
    ? { "content-type": "application/grpc-web+proto" }
    : { "content-type": "application/grpc", te: "trailers" };
  return { ...protocolHeaders, ...shape.headers };
}

function fastShape(path: string, messages: number, messageBytes: number): CallShape {
  return {
    protocol: "grpc",
    path,
    headers: { "bench-messages": String(messages), "bench-message-bytes": String(messageBytes) },
    body: UNARY_REQUEST,
    expectedMessages: messages,
    expectedMessageBytes: messageBytes,
  };
}

/** Builds the scenarios, in run order. */
export function buildScenarios(settings: ScenarioSettings): Scenario[] {
  const echoPayloadBytes = 1024;
  const unary = fastShape("/bench.Bench/Unary", 1, UNARY_RESPONSE_BYTES);
  return [
    {
      name: "idle_connections",
      description:
        `${settings.idleConnections} idle client connections (preface and SETTINGS only): memory`,
      backend: "fast",
      shape: unary,
      kind: "idle",
      connections: settings.idleConnections,
      streamsPerConnection: 0,
      builtinOnly: false,
    },
    {
      name: "unary_c1",
      description: "unary, 1 call in flight: latency",
      backend: "fast",
      shape: unary,
      kind: "latency",
      connections: 1,
      streamsPerConnection: 1,
      builtinOnly: true,
    },
    {
      name: "unary_high",
      description: `unary, ${settings.clients}×${settings.streams} in flight: throughput`,
      backend: "fast",
      shape: unary,
      kind: "throughput",
      connections: settings.clients,
      streamsPerConnection: settings.streams,
      builtinOnly: false,
    },
    {
      name: "grpc_web_unary",
      description:
        `the same unary as gRPC-Web over HTTP/1.1, ${GRPC_WEB_CONNECTIONS} connections × ` +
        "1 in flight: CPU/call vs unary_high",
      backend: "fast",
      shape: { ...unary, protocol: "grpc-web" },
      kind: "throughput",
      connections: GRPC_WEB_CONNECTIONS,
      streamsPerConnection: 1,
      builtinOnly: false,
      nativeScenario: "unary_high",
    },
    {
      name: "many_clients",
      description: `unary, ${settings.manyClients} connections × 1 in flight: many clients`,
      backend: "fast",
      shape: unary,
      kind: "throughput",
      connections: settings.manyClients,
      streamsPerConnection: 1,
      builtinOnly: false,
    },
    {
      name: "stream_1k",
      description: "server streaming, 1000 × 1 KiB per call, 2×4 in flight",
      backend: "fast",
      shape: fastShape("/bench.Bench/Stream", 1000, 1024),
      kind: "streaming",
      connections: 2,
      streamsPerConnection: 4,
      builtinOnly: false,
    },
    {
      name: "stream_64k",
      description: "server streaming, 64 × 64 KiB per call, 2×4 in flight",
      backend: "fast",
      shape: fastShape("/bench.Bench/Stream", 64, 64 * 1024),
      kind: "streaming",
      connections: 2,
      streamsPerConnection: 4,
      builtinOnly: false,
    },
    {
      name: "grpcjs_stream",
      description: "sanity: @grpc/grpc-js backend, 100 × 1 KiB per call, 1×4 in flight",
      backend: "grpcjs",
      shape: {
        protocol: "grpc",
        path: "/bench.Echo/ServerStream",
        headers: { "bench-messages": "100" },
        body: frameGrpcMessage(new Uint8Array(echoPayloadBytes).fill(0x61)),
        expectedMessages: 100,
        expectedMessageBytes: echoPayloadBytes,
      },
      kind: "streaming",
      connections: 1,
      streamsPerConnection: 4,
      builtinOnly: true,
    },
  ];
}

/**
 * The most connections `scenario` holds open at once at a proxy, client and upstream together,
 * with one upstream connection per call in flight (as NGINX's `grpc_pass` needs).
 */
export function connectionsHeld(scenario: Scenario): number {
  return scenario.connections * (1 + scenario.streamsPerConnection);
}
