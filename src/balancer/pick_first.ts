/**
 * `pick_first`: sends every call to one backend and stays on it while it is READY (gRPC
 * semantics, modelled on grpc-go's `balancer/pickfirst/pickfirstleaf`).
 *
 * A pass walks the members in order. Each attempt runs alone for the connection delay
 * (250 ms, pickfirstleaf's `connectionDelayInterval`, from Happy Eyeballs, RFC 8305 §5);
 * then the next member is tried as well while the earlier attempts keep running, and the
 * first member to become READY is chosen. So a backend that accepts TCP but never speaks
 * HTTP/2 costs 250 ms, not the whole `connectTimeout`. A member that fails moves the pass on
 * at once; failed members keep reconnecting with backoff on their own. Once a member is
 * chosen every other member is disconnected (pickfirstleaf's `shutdownRemainingLocked`),
 * and when the chosen one stops being READY a new pass starts from the first member. Only
 * when every member has failed does the cluster report TRANSIENT_FAILURE and fail calls fast.
 *
 * With `shuffleAddressList` (gRFC A62) the members are shuffled on every membership update,
 * so that a fleet of proxies with the same list does not pile onto its first backend.
 * @module
 */
import {
  type Balancer,
  type BalancerHost,
  type ConnectivityState,
  failingPicker,
  type Picker,
  type PickFirstConfig,
  QUEUE_PICKER,
  type SubConn,
} from "./types.ts";

/** pickfirstleaf's `connectionDelayInterval`. */
const DEFAULT_CONNECTION_DELAY_MS = 250;

/** {@link PickFirstConfig} plus the randomness and timer, which tests replace. */
export interface PickFirstOptions extends PickFirstConfig {
  /** A random number in [0, 1) for the shuffle; `Math.random` by default. */
  readonly random?: () => number;
  /** Arms the connection-delay timer and returns its cancel; `setTimeout` by default. */
  readonly schedule?: (callback: () => void, delayMs: number) => () => void;
}

function scheduleWithTimeout(callback: () => void, delayMs: number): () => void {
  const timer = setTimeout(callback, delayMs);
  return () => clearTimeout(timer);
}

/** A Fisher-Yates shuffle, as A62 asks ("randomly shuffle the list of addresses"). */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const result = [...items];
  for (let i = result.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [result[i], result[j]] = [result[j], result[i]];
  }
  return result;
}

function stickyPicker(subConn: SubConn): Picker {
  const result = { kind: "complete", subConn } as const;
  return { pick: () => result };
}

class PickFirstBalancer implements Balancer {
  readonly #host: BalancerHost;
  readonly #shuffle: boolean;
  readonly #delayMs: number;
  readonly #random: () => number;
  readonly #schedule: (callback: () => void, delayMs: number) => () => void;
  #subConns: readonly SubConn[] = [];
  #selected: SubConn | undefined;
  /** The member the current pass has reached; it and every member before it may connect. */
  #frontier = 0;
  /** The frontier the armed delay timer will move on from, or -1 when none is armed. */
  #timerFrontier = -1;
  #cancelTimer: (() => void) | undefined;
  /** connect() and disconnect() report state changes synchronously, back into this class. */
  #reconciling = false;
  #dirty = false;
  #closed = false;

  constructor(host: BalancerHost, options: PickFirstOptions) {
    this.#host = host;
    this.#shuffle = options.shuffleAddressList ?? false;
    this.#delayMs = options.connectionDelayMs ?? DEFAULT_CONNECTION_DELAY_MS;
    this.#random = options.random ?? Math.random;
    this.#schedule = options.schedule ?? scheduleWithTimeout;
  }

  updateSubConns(subConns: readonly SubConn[]): void {
    this.#subConns = this.#shuffle ? shuffled(subConns, this.#random) : subConns;
    const kept = this.#selected;
    // As pickfirstleaf: a READY member that is still listed stays chosen.
    if (kept?.state === "READY" && subConns.includes(kept)) this.#select(kept);
    else this.#startPass();
    this.#reconcile();
  }

  updateSubConnState(subConn: SubConn, state: ConnectivityState): void {
    if (this.#closed || !this.#subConns.includes(subConn)) return;
    if (subConn === this.#selected && state !== "READY") this.#startPass();
    this.#reconcile();
  }

  close(): void {
    this.#closed = true;
    this.#cancelDelay();
    this.#subConns = [];
    this.#selected = undefined;
  }

  #startPass(): void {
    this.#selected = undefined;
    this.#frontier = 0;
    this.#cancelDelay();
  }

  #reconcile(): void {
    if (this.#closed) return;
    if (this.#reconciling) {
      this.#dirty = true;
      return;
    }
    this.#reconciling = true;
    try {
      do {
        this.#dirty = false;
        this.#step();
      } while (this.#dirty && !this.#closed);
    } finally {
      this.#reconciling = false;
    }
  }

  #step(): void {
    if (this.#selected?.state === "READY") {
      this.#host.updateState({ state: "READY", picker: stickyPicker(this.#selected) });
      return;
    }
    this.#selected = undefined;
    // Whichever attempt finishes first wins, not the first in list order.
    const ready = this.#subConns.find((subConn) => subConn.state === "READY");
    if (ready) {
      this.#select(ready);
      return;
    }
    const count = this.#subConns.length;
    while (this.#frontier < count && this.#subConns[this.#frontier].state === "TRANSIENT_FAILURE") {
      this.#frontier++;
    }
    // Every member the pass has reached keeps trying; a failed one retries with its backoff.
    for (let i = 0; i <= Math.min(this.#frontier, count - 1); i++) {
      if (this.#subConns[i].state === "IDLE") this.#subConns[i].connect();
    }
    if (this.#frontier < count - 1) this.#armDelay();
    else this.#cancelDelay();
    if (this.#subConns.some((subConn) => subConn.state !== "TRANSIENT_FAILURE")) {
      this.#host.updateState({ state: "CONNECTING", picker: QUEUE_PICKER });
      return;
    }
    const message = count === 0 ? "no backends" : `all ${count} backends failed`;
    this.#host.updateState({ state: "TRANSIENT_FAILURE", picker: failingPicker(message) });
  }

  /** Chooses `subConn` and lets every other member go. */
  #select(subConn: SubConn): void {
    this.#selected = subConn;
    this.#cancelDelay();
    for (const other of this.#subConns) if (other !== subConn) other.disconnect();
    if (this.#selected === subConn && subConn.state === "READY") {
      this.#host.updateState({ state: "READY", picker: stickyPicker(subConn) });
    }
  }

  /** Gives the attempt at the frontier its connection delay, then moves the pass on. */
  #armDelay(): void {
    if (this.#timerFrontier === this.#frontier) return;
    this.#cancelDelay();
    this.#timerFrontier = this.#frontier;
    this.#cancelTimer = this.#schedule(() => {
      this.#cancelTimer = undefined;
      this.#timerFrontier = -1;
      this.#frontier++;
      this.#reconcile();
    }, this.#delayMs);
  }

  #cancelDelay(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#timerFrontier = -1;
  }
}

/** Builds a `pick_first` balancer. */
export function createPickFirstBalancer(
  host: BalancerHost,
  options: PickFirstOptions = {},
): Balancer {
  return new PickFirstBalancer(host, options);
}
