/**
 * The N entries with the longest responses of a stream, in stream order: the last step of the released Magpie
 * filters ("keep the 300K longest responses"). A min-heap of N: memory is N rows, whatever the topic's size.
 * On equal lengths the earlier entry is kept.
 */
export class LongestEntries<T> {
  private readonly heap: { length: number; seq: number; item: T }[] = [];
  private seq = 0;
  /** Entries offered and pushed out again. */
  dropped = 0;

  constructor(readonly limit: number) {}

  offer(item: T, length: number): void {
    const entry = { length, seq: this.seq++, item };
    if (this.heap.length < this.limit) {
      this.heap.push(entry);
      this.up(this.heap.length - 1);
      return;
    }
    this.dropped++;
    if (this.heap.length === 0 || !this.before(this.heap[0]!, entry)) return;
    this.heap[0] = entry;
    this.down(0);
  }

  /** The kept entries in the order they were offered. */
  items(): T[] {
    return [...this.heap].sort((a, b) => a.seq - b.seq).map((e) => e.item);
  }

  /** a goes before b in the heap: shorter, or as long and later (so it is dropped first). */
  private before(a: { length: number; seq: number }, b: { length: number; seq: number }): boolean {
    return a.length < b.length || (a.length === b.length && a.seq > b.seq);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(this.heap[i]!, this.heap[parent]!)) return;
      [this.heap[i], this.heap[parent]] = [this.heap[parent]!, this.heap[i]!];
      i = parent;
    }
  }

  private down(i: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < this.heap.length && this.before(this.heap[l]!, this.heap[min]!)) min = l;
      if (r < this.heap.length && this.before(this.heap[r]!, this.heap[min]!)) min = r;
      if (min === i) return;
      [this.heap[i], this.heap[min]] = [this.heap[min]!, this.heap[i]!];
      i = min;
    }
  }
}
