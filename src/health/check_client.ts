/**
 * One backend's `grpc.health.v1.Health/Check` client on `@grpc/grpc-js`, and the mapping of
 * its answers to {@link CheckResult}s. One channel per backend is reused for every probe.
 *
 * grpc-js is loaded with the first check: it costs about 15 MB of RSS, which a proxy
 * without active health checks should not carry.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Socket as NetSocket } from "node:net";
import nodeTls from "node:tls";
import { parseHostPort } from "../config/address.ts";
import type { BackendTls } from "../config/tls.ts";
import { checkAlpn, nodeTlsOptions } from "../upstream/tls_dial.ts";

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

type HealthClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ChannelOptions,
) => HealthServiceClient;

/** Channel credentials for TLS to `address` (`host:port`) with `tls`. */
type TlsCredentialsConstructor = new (
  host: string,
  address: string,
  tls: BackendTls,
) => grpc.ChannelCredentials;

interface GrpcRuntime {
  readonly grpc: typeof grpc;
  readonly HealthClient: HealthClientConstructor;
  readonly TlsCredentials: TlsCredentialsConstructor;
}

let runtime: Promise<GrpcRuntime> | undefined;

/** Loads grpc-js and the health service definition, once per process. */
function loadRuntime(): Promise<GrpcRuntime> {
  runtime ??= Promise.all([
    import("@grpc/grpc-js"),
    import("grpc-health-check"),
    import("./node_http2_goaway.ts"),
  ]).then(
    ([grpcJs, health, goaway]) => {
      goaway.deferGoawayCloseOnAllClientSessions();
      // The generated constructor is typed for any service; this one is known to have `Check`.
      const HealthClient = grpcJs.makeGenericClientConstructor(
        health.service,
        "grpc.health.v1.Health",
      ) as unknown as HealthClientConstructor;
      return { grpc: grpcJs, HealthClient, TlsCredentials: tlsCredentialsClass(grpcJs) };
    },
  );
  return runtime;
}

/**
 * grpc-js channel credentials that open TLS with a data-plane dial's options
 * ({@link nodeTlsOptions}), so that a probe verifies a backend as calls do: the same server
 * name, `ca` replacing the roots, the client certificate, ALPN `h2`. grpc-js's own `createSsl`
 * would send the backend's IP address as the server name when `serverName` is unset, which
 * Deno's `node:tls` refuses (SNI carries no IP address, RFC 6066 §3).
 */
function tlsCredentialsClass(grpcJs: typeof grpc): TlsCredentialsConstructor {
  return class TlsCredentials extends grpcJs.ChannelCredentials {
    readonly #host: string;
    readonly #address: string;
    readonly #tls: BackendTls;

    constructor(host: string, address: string, tls: BackendTls) {
      super();
      this.#host = host;
      this.#address = address;
      this.#tls = tls;
    }

    _isSecure(): boolean {
      return true;
    }

    _equals(other: grpc.ChannelCredentials): boolean {
      return other === this;
    }

    _createSecureConnector(
      _target: unknown,
      _options: unknown,
      callCredentials?: grpc.CallCredentials,
    ) {
      const calls = callCredentials ?? grpcJs.credentials.createEmpty();
      const options = nodeTlsOptions(this.#host, this.#tls);
      const address = this.#address;
      return {
        // grpc-js hands over the TCP connection and destroys it if this rejects.
        connect: (socket: NetSocket) =>
          new Promise<{ socket: nodeTls.TLSSocket; secure: true }>((resolve, reject) => {
            const secured = nodeTls.connect({ ...options, socket }, () => {
              try {
                checkAlpn(address, secured.alpnProtocol);
                resolve({ socket: secured, secure: true });
              } catch (error) {
                secured.destroy();
                reject(error);
              }
            });
            secured.once("error", reject);
          }),
        waitForReady: () => Promise.resolve(),
        getCallCredentials: () => calls,
        destroy: () => {},
      };
    }
  };
}

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
  /** The cluster's TLS to its backends, which probes use as calls do; `undefined`: h2c. */
  readonly tls: BackendTls | undefined;
}

/** Issues health checks to one backend over one reused grpc-js channel. */
export class HealthCheckClient {
  readonly #address: string;
  readonly #options: HealthCheckClientOptions;
  readonly #inFlight = new Set<grpc.ClientUnaryCall>();
  #client: HealthServiceClient | undefined;
  #closed = false;

  /** Prepares the client; the channel is created, and connects, with the first check. */
  constructor(address: string, options: HealthCheckClientOptions) {
    this.#address = address;
    this.#options = options;
  }

  /** Runs one check; never rejects. */
  async check(): Promise<CheckResult> {
    const loaded = await loadRuntime();
    const { grpc } = loaded;
    if (this.#closed) return { kind: "error", reason: "health checking stopped" };
    const { service, timeoutMs } = this.#options;
    const client = this.#client ??= this.#createClient(loaded);
    return new Promise((resolve) => {
      const call: grpc.ClientUnaryCall = client.Check(
        { service },
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          this.#inFlight.delete(call);
          resolve(
            error ? resultForError(grpc, error, service, timeoutMs) : resultForStatus(response),
          );
        },
      );
      this.#inFlight.add(call);
    });
  }

  /** Cancels checks in flight and closes the channel. */
  close(): void {
    this.#closed = true;
    for (const call of this.#inFlight) call.cancel();
    this.#client?.close();
  }

  #createClient({ grpc: grpcJs, HealthClient, TlsCredentials }: GrpcRuntime): HealthServiceClient {
    const options = this.#options;
    const channelOptions: grpc.ChannelOptions = {
      "grpc.initial_reconnect_backoff_ms": Math.min(options.maxReconnectBackoffMs, 1_000),
      "grpc.max_reconnect_backoff_ms": options.maxReconnectBackoffMs,
    };
    if (options.authority !== undefined) {
      channelOptions["grpc.default_authority"] = options.authority;
    }
    const { tls } = options;
    const credentials = tls === undefined
      ? grpcJs.credentials.createInsecure()
      : new TlsCredentials(parseHostPort(this.#address)!.host, this.#address, tls);
    return new HealthClient(this.#address, credentials, channelOptions);
  }
}

function resultForStatus(response: CheckResponse | undefined): CheckResult {
  const status = response?.status ?? "UNKNOWN";
  return status === "SERVING" ? { kind: "serving" } : { kind: "rejected", reason: status };
}

function resultForError(
  grpc: GrpcRuntime["grpc"],
  error: grpc.ServiceError,
  service: string,
  timeoutMs: number,
): CheckResult {
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
