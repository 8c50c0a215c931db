/**
 * Switchyard's version, from `deno.json`: one source for `--version`, the admin API's
 * `/` answer, the startup log and `switchyard_build_info`.
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };

/** The running Switchyard's version. */
export const VERSION: string = denoJson.version;
