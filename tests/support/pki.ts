/**
 * Test certificates made with the `openssl` command: CAs, certificates they issue and
 * self-signed ones, all P-256 keys valid for a day unless told otherwise. Every file is written
 * to a directory the caller owns and removes: `name.pem` for a certificate, `name.key` for its
 * key (and `name.csr`, `name.ext` along the way).
 * @module
 */

/** Paths of a PEM certificate and its PEM private key. */
export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** What {@link makeServerPki} writes: two CAs and a server certificate. */
export interface ServerPki {
  /** The temporary directory holding every file; the caller removes it. */
  readonly dir: string;
  /** The test CA, `ca` in {@link issue}'s options (the default). */
  readonly ca: string;
  /** Another CA, `other-ca` in {@link issue}'s options. */
  readonly otherCa: string;
  /** Issued by `ca` for DNS:localhost, IP:127.0.0.1 and DNS:orders.internal, for serverAuth. */
  readonly server: Pem;
}

/** Options of {@link issue}. */
export interface IssueOptions {
  /** The issuing CA's name in the directory (`ca.pem`, `ca.key`). */
  readonly ca?: string;
  /** Days of validity; a negative number makes a certificate that has already expired. */
  readonly days?: number;
  /** An existing key's name in the directory to certify, instead of a new key. */
  readonly key?: string;
}

/** A new P-256 key, unencrypted, for `openssl req`. */
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Runs `openssl args…` in `dir`; rejects with openssl's stderr when it fails. */
export async function openssl(dir: string, ...args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(stderr)}`);
}

/**
 * A self-signed certificate `name.pem` and its new key `name.key` in `dir`, for `subject`
 * (`/CN=…`) with the `-addext` extensions `addext` (e.g. `subjectAltName=IP:127.0.0.1`).
 */
export async function selfSigned(
  dir: string,
  name: string,
  subject: string,
  addext: readonly string[] = [],
): Promise<Pem> {
  await openssl(
    dir,
    ...["req", "-x509", ...EC_KEY, "-keyout", `${name}.key`, "-out", `${name}.pem`],
    ...["-days", "1", "-subj", subject, ...addext.flatMap((ext) => ["-addext", ext])],
  );
  return { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
}

/** A CA `name.pem` with its key `name.key` in `dir`, for {@link issue} to sign with. */
export function makeCa(dir: string, name: string, subject: string): Promise<Pem> {
  return selfSigned(dir, name, subject, [
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign",
  ]);
}

/**
 * A v3 leaf certificate `name.pem` for `subject` in `dir`, signed by the CA `options.ca`
 * (default `ca`) and valid for `options.days` (default 1), with its key `name.key`, or the
 * existing `options.key`. `extensions` are `-extfile` lines, such as
 * `subjectAltName = DNS:localhost, IP:127.0.0.1` or `extendedKeyUsage = clientAuth`;
 * `basicConstraints = CA:FALSE` is always added. (rustls refuses v1 client certificates.)
 */
export async function issue(
  dir: string,
  name: string,
  subject: string,
  extensions: readonly string[],
  { ca = "ca", days = 1, key }: IssueOptions = {},
): Promise<Pem> {
  const keyName = key ?? name;
  const newKey = key === undefined ? [...EC_KEY, "-keyout", `${name}.key`] : ["-key", `${key}.key`];
  await openssl(dir, "req", "-new", ...newKey, "-out", `${name}.csr`, "-subj", subject);
  await Deno.writeTextFile(
    `${dir}/${name}.ext`,
    ["basicConstraints = CA:FALSE", ...extensions, ""].join("\n"),
  );
  await openssl(
    dir,
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`],
    ...["-set_serial", String(Math.floor(Math.random() * 2 ** 48)), "-out", `${name}.pem`],
    ...["-days", String(days), "-extfile", `${name}.ext`],
  );
  return { cert: `${dir}/${name}.pem`, key: `${dir}/${keyName}.key` };
}

/**
 * A new temporary directory (named with `prefix`) holding the CAs `ca` and `other-ca` and a
 * server certificate `server` issued by `ca`: see {@link ServerPki}.
 */
export async function makeServerPki(prefix: string): Promise<ServerPki> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    const ca = await makeCa(dir, "ca", "/CN=Switchyard Test CA");
    const otherCa = await makeCa(dir, "other-ca", "/CN=Other CA");
    const server = await issue(dir, "server", "/CN=localhost", [
      "subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:orders.internal",
      "extendedKeyUsage = serverAuth",
    ]);
    return { dir, ca: ca.cert, otherCa: otherCa.cert, server };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}
