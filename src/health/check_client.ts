/**
 * One backend's `grpc.health.v1.Health/Check` client on `@grpc/grpc-js`, and the mapping of
 * its answers to {@link CheckResult}s. One channel per backend is reused for every probe.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { deferGoawayCloseOnAllClientSessions } from "./node_http2_goaway.ts";

/** `HealthCheckResponse.ServingStatus`, as proto-loader decodes enums (`enums: String`). */
type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** `HealthCheckResponse`. */
interface CheckResponse {
  readonly status?: ServingStatus;
}

/** The generated client's `Check` method, which grpc-js types only as a `Function`. */
type HealthServiceClient = grpc.Client & {
  Check(
    request: { service: string },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<CheckResponse>,
  ): grpc.ClientUnaryCall;
};

/** What one check found, before thresholds apply. */
export type CheckResult =
  /** The backend answered SERVING. */
  | { readonly kind: "serving" }
  /** The backend answered, and said it is not serving: unhealthy at once. */
  | { readonly kind: "rejected"; readonly reason: string }
  /** The backend has no health service. */
  | { readonly kind: "unimplemented" }
  /** No answer (timeout, connection error, other status): counts toward the threshold. */
  | { readonly kind: "error"; readonly reason: string };

// The generated constructor is typed for any service; this one is known to have `Check`.
const HealthClient = grpc.makeGenericClientConstructor(
  healthService,
  "grpc.health.v1.Health",
) as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ChannelOptions,
) => HealthServiceClient;

/** How a {@link HealthCheckClient} probes. */
export interface HealthCheckClientOptions {
  /** The service name sent in the request; `""` means the whole server. */
  readonly service: string;
  /** The `:authority` to send, when not the backend's address. */
  readonly authority: string | undefined;
  /** Deadline of one check. */
  readonly timeoutMs: number;
  /**
   * Upper bound of grpc-js's reconnect backoff, so that a backend that comes back is seen
   * by the next probe rather than after grpc-js's default backoff of up to two minutes.
   */
  readonly maxReconnectBackoffMs: number;
}

/** Issues health checks to one backend over one reused grpc-js channel. */
export class HealthCheckClient {
  readonly #client: HealthServiceClient;
  readonly #options: HealthCheckClientOptions;
  readonly #inFlight = new Set<grpc.ClientUnaryCall>();

  /** Creates the channel; it connects lazily on the first check. */
  constructor(address: string, options: HealthCheckClientOptions) {
    deferGoawayCloseOnAllClientSessions();
    this.#options = options;
    const channelOptions: grpc.ChannelOptions = {
      "grpc.initial_reconnect_backoff_ms": Math.min(options.maxReconnectBackoffMs, 1_000),
      "grpc.max_reconnect_backoff_ms": options.maxReconnectBackoffMs,
    };
    if (options.authority !== undefined) {
      channelOptions["grpc.default_authority"] = options.authority;
    }
    this.#client = new HealthClient(address, grpc.credentials.createInsecure(), channelOptions);
  }

  /** Runs one check; never rejects. */
  check(): Promise<CheckResult> {
    const { service, timeoutMs } = this.#options;
    return new Promise((resolve) => {
      const call: grpc.ClientUnaryCall = this.#client.Check(
        { service },
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          this.#inFlight.delete(call);
          resolve(error ? resultForError(error, service, timeoutMs) : resultForStatus(response));
        },
      );
      this.#inFlight.add(call);
    });
  }

  /** Cancels checks in flight and closes the channel. */
  close(): void {
    for (const call of this.#inFlight) call.cancel();
    this.#client.close();
  }
}

function resultForStatus(response: CheckResponse | undefined): CheckResult {
  const status = response?.status ?? "UNKNOWN";
  return status === "SERVING" ? { kind: "serving" } : { kind: "rejected", reason: status };
}

function resultForError(error: grpc.ServiceError, service: string, timeoutMs: number): CheckResult {
  switch (error.code) {
    case grpc.status.UNIMPLEMENTED:
      return { kind: "unimplemented" };
    case grpc.status.NOT_FOUND:
      return { kind: "rejected", reason: `service ${JSON.stringify(service)} NOT_FOUND` };
    case grpc.status.DEADLINE_EXCEEDED:
      return { kind: "error", reason: `timeout after ${timeoutMs}ms` };
    case grpc.status.UNAVAILABLE:
      return { kind: "error", reason: `connection error: ${error.details}` };
    default:
      return { kind: "error", reason: `status ${grpc.status[error.code]}: ${error.details}` };
  }
}
