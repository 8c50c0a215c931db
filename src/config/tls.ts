/**
 * TLS as the planes use it: the config's TLS settings with PEM text in place of file paths.
 * Types and one pure function only, so that a data-plane worker can use them without loading
 * the control plane's file reading and certificate checks (`tls_material.ts`).
 * @module
 */
import type { BackendTlsConfig } from "./schema.ts";

/** A certificate chain and its private key, as PEM. */
export interface CertifiedKey {
  readonly cert: string;
  readonly key: string;
}

/** The listener's `tls`: its settings, with the PEM text in place of the paths. */
export interface ListenerTlsMaterial extends CertifiedKey {
  /** CAs that sign client certificates, when `clientCa` is set (mTLS). */
  readonly clientCa: string | undefined;
  /** Refuse clients that send no certificate. */
  readonly requireClientCert: boolean;
  /** The request header that carries a verified client's identity to the backend. */
  readonly clientIdentityHeader: string | undefined;
}

/** The PEM of one cluster's `tls`: what its backends are verified with and shown. */
export interface ClusterTlsMaterial {
  /** CA certificates, when `ca` is set (else the system roots apply). */
  readonly ca?: string;
  /** The client certificate chain, when `cert` is set. */
  readonly cert?: string;
  /** The client certificate's private key, with `cert`. */
  readonly key?: string;
}

/** Every PEM the config names. */
export interface TlsMaterial {
  /** The listener's certificate, key and client CAs, when `tls` is set. */
  readonly listener: ListenerTlsMaterial | undefined;
  /** Per cluster with `tls`, by name. */
  readonly clusters: Readonly<Record<string, ClusterTlsMaterial>>;
}

/**
 * A cluster's TLS to its backends, settings and PEM together: what a dial or a health probe
 * needs, in either plane.
 */
export interface BackendTls extends ClusterTlsMaterial {
  /** The name sent in SNI and verified; `undefined`: the backend's host. */
  readonly serverName: string | undefined;
  /** ALPN protocols offered, `h2` among them. */
  readonly alpn: readonly string[];
  /** Accept any certificate. */
  readonly insecureSkipVerify: boolean;
}

/** A cluster's {@link BackendTls} from its `tls` settings and PEM; `undefined` without `tls`. */
export function backendTls(
  config: BackendTlsConfig | undefined,
  material: ClusterTlsMaterial | undefined,
): BackendTls | undefined {
  if (config === undefined) return undefined;
  const { serverName, alpn, insecureSkipVerify } = config;
  return { ...material, serverName, alpn, insecureSkipVerify };
}
