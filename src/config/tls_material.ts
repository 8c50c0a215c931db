/**
 * The PEM files a config names, read and checked by the control plane at start, at every
 * reload and by `switchyard check`. Data planes get the PEM text, never paths: a worker reads
 * no file, and a reload that finds a bad certificate changes nothing.
 *
 * A certificate is refused when it cannot be parsed, is expired or not yet valid, or does not
 * match its private key.
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { ConfigError } from "./load.ts";
import type { Config } from "./schema.ts";
import type { CertifiedKey, ClusterTlsMaterial, ListenerTlsMaterial, TlsMaterial } from "./tls.ts";

/** Collects the problems of several files, so that one run reports them all. */
export class PemReader {
  readonly problems: string[] = [];

  /** The text of `path`, or `undefined` (with a problem noted for `field`). */
  async read(field: string, path: string): Promise<string | undefined> {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      this.problems.push(`${field}: cannot read ${path}: ${(error as Error).message}`);
      return undefined;
    }
  }

  /**
   * A certificate and key from `certPath` and `keyPath`, checked: both parse, the certificate
   * is valid now, and the key is the certificate's. `undefined` (with problems noted) if not.
   */
  async certifiedKey(
    field: string,
    certPath: string,
    keyPath: string,
  ): Promise<CertifiedKey | undefined> {
    const [cert, key] = [
      await this.read(`${field}.cert`, certPath),
      await this.read(`${field}.key`, keyPath),
    ];
    if (cert === undefined || key === undefined) return undefined;
    const problem = checkPair(cert, key);
    if (problem !== undefined) {
      this.problems.push(`${field}.cert: ${problem}`);
      return undefined;
    }
    return { cert, key };
  }

  /** CA certificates from `path`, checked to parse; `undefined` (with a problem) if not. */
  async caCerts(field: string, path: string): Promise<string | undefined> {
    const pem = await this.read(field, path);
    if (pem === undefined) return undefined;
    try {
      new X509Certificate(pem);
      return pem;
    } catch (error) {
      this.problems.push(`${field}: ${path} is not a PEM certificate: ${(error as Error).message}`);
      return undefined;
    }
  }

  /** Throws a {@link ConfigError} for `source` when any problem was noted. */
  throwIfProblems(source: string): void {
    if (this.problems.length > 0) throw new ConfigError(source, this.problems);
  }
}

/** Why `cert` and `key` cannot serve now, or `undefined` when they can. */
function checkPair(cert: string, key: string): string | undefined {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error) {
    return `not a PEM certificate: ${(error as Error).message}`;
  }
  const now = Date.now();
  if (Date.parse(certificate.validTo) < now) return `expired on ${certificate.validTo}`;
  if (Date.parse(certificate.validFrom) > now) return `not valid before ${certificate.validFrom}`;
  try {
    if (!certificate.checkPrivateKey(createPrivateKey(key))) {
      return "does not match its private key";
    }
  } catch (error) {
    return `its private key cannot be read: ${(error as Error).message}`;
  }
  return undefined;
}

/** The listener's `tls` with its files read; `undefined` (with problems noted) if one is unusable. */
async function readListenerTls(
  reader: PemReader,
  tls: NonNullable<Config["tls"]>,
): Promise<ListenerTlsMaterial | undefined> {
  const pair = await reader.certifiedKey("tls", tls.cert, tls.key);
  const clientCa = tls.clientCa === undefined
    ? undefined
    : await reader.caCerts("tls.clientCa", tls.clientCa);
  if (pair === undefined || (tls.clientCa !== undefined && clientCa === undefined)) {
    return undefined;
  }
  const { requireClientCert, clientIdentityHeader } = tls;
  return { ...pair, clientCa, requireClientCert, clientIdentityHeader };
}

/**
 * Reads and checks every PEM file `config` (from `source`) names. Throws {@link ConfigError}
 * with a `path: reason` line per unusable file.
 */
export async function readTlsMaterial(config: Config, source: string): Promise<TlsMaterial> {
  const reader = new PemReader();
  const listener = config.tls ? await readListenerTls(reader, config.tls) : undefined;
  const clusters: Record<string, ClusterTlsMaterial> = {};
  for (const [name, { tls }] of Object.entries(config.clusters)) {
    if (tls === undefined) continue;
    const field = `clusters.${name}.tls`;
    const ca = tls.ca === undefined ? undefined : await reader.caCerts(`${field}.ca`, tls.ca);
    // The schema lets `cert` and `key` only come together.
    const pair = tls.cert === undefined || tls.key === undefined
      ? undefined
      : await reader.certifiedKey(field, tls.cert, tls.key);
    clusters[name] = { ca, ...pair };
  }
  reader.throwIfProblems(source);
  return { listener, clusters };
}
