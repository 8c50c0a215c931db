/**
 * Per-call checking for load that cannot read gRPC trailers itself (h2load): each target
 * keeps a ledger of the calls it finished, by the grpc-status its client was sent, read just
 * before and just after the measured run. The run passes only when the ledger's new entries
 * are exactly the generator's completed calls, every one with `grpc-status: 0`.
 * @module
 */
import { settled } from "./settle.ts";

/** Finished calls by grpc-status (`"0"`, `"14"`, or a description when none was sent). */
export type StatusCounts = ReadonlyMap<string, number>;

/** Where a target records every call it finished. */
export interface CallLedger {
  /** What the ledger is, for the report: e.g. `nginx access log`. */
  readonly source: string;
  /** Calls finished since the target started, by grpc-status. */
  read(): Promise<StatusCounts>;
}

/** A ledger settles once two reads 100 ms apart agree; it is given 3 s. */
const LEDGER_SETTLE = { intervalMs: 100, maxReads: 30 };

function sameCounts(a: StatusCounts, b: StatusCounts): boolean {
  return a.size === b.size && [...a].every(([status, count]) => b.get(status) === count);
}

/**
 * Reads `ledger` until two reads agree: calls cut off by the previous run's deadline (the
 * warm-up's) are recorded only once the target notices the closed connection.
 */
export function settledCounts(ledger: CallLedger): Promise<StatusCounts> {
  return settled(() => ledger.read(), sameCounts, LEDGER_SETTLE);
}

/** The outcome of checking a run against a ledger. */
export interface LedgerCheck {
  /** Calls the ledger shows finished with `grpc-status: 0` during the run. */
  readonly okCalls: number;
  /** Why the run fails; undefined when the ledger matches the generator's count. */
  readonly failure?: string;
}

/**
 * Compares the ledger entries added between `before` and `after` with the `completed` calls
 * the generator reported: they must number exactly `completed`, all with grpc-status 0.
 */
export function checkLedger(
  source: string,
  before: StatusCounts,
  after: StatusCounts,
  completed: number,
): LedgerCheck {
  const added = [...after]
    .map(([status, count]): [string, number] => [status, count - (before.get(status) ?? 0)])
    .filter(([, count]) => count !== 0);
  const okCalls = added.find(([status]) => status === "0")?.[1] ?? 0;
  const total = added.reduce((sum, [, count]) => sum + count, 0);
  const bad = added.filter(([status]) => status !== "0");
  if (bad.length > 0) {
    const detail = bad.map(([status, count]) => `${count} × grpc-status ${status}`).join(", ");
    return { okCalls, failure: `${source}: ${detail}` };
  }
  if (total !== completed) {
    return {
      okCalls,
      failure: `${source} shows ${total} finished calls, the load generator ${completed}`,
    };
  }
  return { okCalls };
}
