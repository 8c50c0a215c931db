/**
 * The HPACK dynamic table (RFC 7541 §2.3.2, §4): a FIFO of header fields bounded by a size in
 * octets, kept in a ring buffer so adding and evicting move no entries.
 * @module
 */

/** Called for each entry the table evicts, oldest first, with the insertion number it had. */
export type EvictListener = (name: string, value: string, insertion: number) => void;

/** The size an entry counts for: its octets plus 32 of overhead (§4.1). */
export function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/** Ring slots allocated up front; the ring doubles when a table of small entries outgrows it. */
const INITIAL_CAPACITY = 16;

/**
 * A dynamic table. Entries are numbered by insertion (0 for the first ever added) and the one
 * with insertion number `k` lives in ring slot `k & mask`, so the ring needs no head pointer.
 * Index 0 of {@linkcode DynamicTable.name} and {@linkcode DynamicTable.value} is the newest
 * entry, which HPACK addresses as index 62 (§2.3.3).
 */
export class DynamicTable {
  #names: string[] = new Array<string>(INITIAL_CAPACITY).fill("");
  #values: string[] = new Array<string>(INITIAL_CAPACITY).fill("");
  #mask = INITIAL_CAPACITY - 1;
  #inserted = 0;
  #length = 0;
  #size = 0;
  #maxSize: number;
  readonly #onEvict: EvictListener | undefined;

  /** Creates an empty table that holds at most `maxSize` octets (§4.2). */
  constructor(maxSize: number, onEvict?: EvictListener) {
    this.#maxSize = maxSize;
    this.#onEvict = onEvict;
  }

  /** How many entries the table holds. */
  get length(): number {
    return this.#length;
  }

  /** The sum of the entries' sizes (§4.1). */
  get size(): number {
    return this.#size;
  }

  /** The most octets the table may hold (§4.2). */
  get maxSize(): number {
    return this.#maxSize;
  }

  /** How many entries were ever added; the newest has insertion number `inserted - 1`. */
  get inserted(): number {
    return this.#inserted;
  }

  /** The name of entry `i`, 0 being the newest; `i` must be below {@linkcode length}. */
  name(i: number): string {
    return this.#names[(this.#inserted - 1 - i) & this.#mask];
  }

  /** The value of entry `i`, 0 being the newest; `i` must be below {@linkcode length}. */
  value(i: number): string {
    return this.#values[(this.#inserted - 1 - i) & this.#mask];
  }

  /**
   * Adds an entry as the newest, evicting the oldest ones until it fits (§4.4). An entry larger
   * than the whole table leaves it empty and is not added.
   */
  add(name: string, value: string): void {
    const size = entrySize(name, value);
    this.#evictTo(this.#maxSize - size);
    if (size > this.#maxSize) return;
    if (this.#length > this.#mask) this.#grow();
    const slot = this.#inserted & this.#mask;
    this.#names[slot] = name;
    this.#values[slot] = value;
    this.#inserted++;
    this.#length++;
    this.#size += size;
  }

  /** Sets the most octets the table may hold, evicting the oldest entries to fit (§4.3). */
  setMaxSize(maxSize: number): void {
    this.#maxSize = maxSize;
    this.#evictTo(maxSize);
  }

  #evictTo(limit: number): void {
    while (this.#size > limit && this.#length > 0) {
      const insertion = this.#inserted - this.#length;
      const slot = insertion & this.#mask;
      const name = this.#names[slot];
      const value = this.#values[slot];
      // Drop the references so an evicted large value can be collected.
      this.#names[slot] = "";
      this.#values[slot] = "";
      this.#length--;
      this.#size -= entrySize(name, value);
      this.#onEvict?.(name, value, insertion);
    }
  }

  #grow(): void {
    const capacity = (this.#mask + 1) * 2;
    const names = new Array<string>(capacity).fill("");
    const values = new Array<string>(capacity).fill("");
    const mask = capacity - 1;
    for (let k = this.#inserted - this.#length; k < this.#inserted; k++) {
      names[k & mask] = this.#names[k & this.#mask];
      values[k & mask] = this.#values[k & this.#mask];
    }
    this.#names = names;
    this.#values = values;
    this.#mask = mask;
  }
}
