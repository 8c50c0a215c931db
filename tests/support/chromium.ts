/**
 * Headless Chromium for browser tests, through playwright-core and Debian's `chromium`
 * (`scripts/dev.sh` installs it; without it the browser tests are skipped with a warning).
 * @module
 */
import { type Browser, chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function chromiumPresent(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** True when Debian's Chromium is installed. */
export const hasChromium: boolean = chromiumPresent();
if (!hasChromium) {
  console.warn(`skipping browser tests: ${CHROMIUM} is absent (apt-get install chromium)`);
}

/** Starts a headless Chromium. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
