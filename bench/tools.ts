/**
 * External tools the bench uses when they are installed (h2load, nginx, node).
 * @module
 */

const EXTRA_DIRS = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/** The absolute path of executable `name` on PATH (or an sbin directory), if any. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), ...EXTRA_DIRS];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = `${dir}/${name}`;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Runs `command args` to completion and returns stdout and stderr together. */
export async function captureOutput(command: string, args: string[]): Promise<string> {
  const { stdout, stderr } = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return decoder.decode(stdout) + decoder.decode(stderr);
}

/**
 * `command args` as run by `/bin/sh` with the soft open-files limit raised to the hard one,
 * for tools that do not raise it themselves (NGINX, h2load; Deno and Node do) and may hold
 * more than the usual soft limit of 1024 sockets. `exec` keeps the process id the tool's.
 */
export function withFdLimitRaised(
  command: string,
  args: readonly string[],
): { command: string; args: string[] } {
  return {
    command: "/bin/sh",
    args: ["-c", 'ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$@"', "sh", command, ...args],
  };
}
