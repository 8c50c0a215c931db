/**
 * The control plane's handle on one data plane, wherever it runs (a worker thread, or the
 * main thread with `workers: 1`).
 * @module
 */
import type { AffinityFromDataPlane, AffinityToDataPlane } from "../affinity/messages.ts";
import type { ClusterSnapshot } from "../cluster/snapshot.ts";
import type { BackendOutcome } from "../health/outcomes.ts";
import type { MetricsJson } from "../metrics/data_plane_metrics.ts";
import { DataPlane, type DataPlaneChange, type DataPlaneInit } from "./data_plane.ts";
import type { DataPlaneStats } from "./stats.ts";

/** One data plane as the control plane drives it. */
export interface DataPlaneHandle {
  /** The worker's number, from 1. */
  readonly worker: number;
  /** True while its listener is bound and it answers. */
  readonly listening: boolean;
  /** Times it was restarted after dying. */
  readonly restarts: number;
  /**
   * Applies snapshots; settles once the data plane has them, or once it is gone (a worker
   * that restarts starts from the latest snapshots anyway).
   */
  apply(snapshots: readonly ClusterSnapshot[]): Promise<void>;
  /** Applies a reload; rejects when the data plane could not (a new address not bound). */
  reconfigure(change: DataPlaneChange): Promise<void>;
  /** Its connectivity and counters. */
  stats(): Promise<DataPlaneStats>;
  /** The clusters with a member that can take a call now. */
  usableClusters(): Promise<string[]>;
  /** Its metric series. */
  metrics(): Promise<MetricsJson>;
  /**
   * Opens its access-log file again at its path, after writing what it buffered to the old
   * one; rejects when the path cannot be opened (it keeps writing to the old file).
   */
  reopenAccessLog(): Promise<void>;
  /** Drains its listener, waiting up to `timeoutMs` for in-flight calls. */
  drain(timeoutMs: number): Promise<void>;
  /** Closes its backend connections and access log, and stops it for good. */
  close(): Promise<void>;
  /** Hands it the control plane's affinity answers and owner updates; no response. */
  affinity(message: AffinityToDataPlane): void;
}

/** The data plane in the main thread (`workers: 1`): calls go straight through. */
export class LocalDataPlane implements DataPlaneHandle {
  /** Always 1. */
  readonly worker = 1;
  /** True: it is only ever asked while the process runs. */
  readonly listening = true;
  /** Always 0: the main thread does not restart. */
  readonly restarts = 0;
  readonly #plane: DataPlane;

  private constructor(plane: DataPlane) {
    this.#plane = plane;
  }

  /**
   * Starts the data plane; passive signals reach `onOutcomes` at the end of each task, and
   * affinity lookups reach `onAffinity` at once.
   */
  static async start(
    init: DataPlaneInit,
    onOutcomes: (batch: BackendOutcome[]) => void,
    onAffinity?: (message: AffinityFromDataPlane) => void,
  ): Promise<LocalDataPlane> {
    return new LocalDataPlane(
      await DataPlane.start(init, { deliver: onOutcomes, delayMs: 0 }, undefined, onAffinity),
    );
  }

  /** See {@link DataPlaneHandle.affinity}. */
  affinity(message: AffinityToDataPlane): void {
    this.#plane.affinity(message);
  }

  /** See {@link DataPlaneHandle.apply}. */
  apply(snapshots: readonly ClusterSnapshot[]): Promise<void> {
    this.#plane.apply(snapshots);
    return Promise.resolve();
  }

  /** See {@link DataPlaneHandle.reconfigure}. */
  reconfigure(change: DataPlaneChange): Promise<void> {
    return this.#plane.reconfigure(change);
  }

  /** See {@link DataPlaneHandle.stats}. */
  stats(): Promise<DataPlaneStats> {
    return Promise.resolve(this.#plane.stats());
  }

  /** See {@link DataPlaneHandle.usableClusters}. */
  usableClusters(): Promise<string[]> {
    return Promise.resolve(this.#plane.usableClusters());
  }

  /** See {@link DataPlaneHandle.metrics}. */
  metrics(): Promise<MetricsJson> {
    return this.#plane.metrics();
  }

  /** See {@link DataPlaneHandle.reopenAccessLog}. */
  reopenAccessLog(): Promise<void> {
    return this.#plane.reopenAccessLog();
  }

  /** See {@link DataPlaneHandle.drain}. */
  drain(timeoutMs: number): Promise<void> {
    return this.#plane.drain(timeoutMs);
  }

  /** See {@link DataPlaneHandle.close}. */
  close(): Promise<void> {
    return this.#plane.close();
  }
}
