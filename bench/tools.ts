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
