import { describe, expect, it } from 'vitest';
import { BUFFERED_PER_SLOT, HELD_PER_SLOT, PartitionWindow, type CommitGroup, type CommitResult, type WindowHooks } from '../../../src/kafka/partition-window.js';
import type { RawRecord, RoutedBatch } from '../../../src/kafka/route.js';

const raw = (offset: number): RawRecord => ({ topic: 'in', partition: 0, offset: String(offset), key: null, value: Buffer.from(String(offset)), headers: {}, timestamp: '0' });
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => raw(from + i));

interface Pending {
  raws: RawRecord[];
  resolve: (r: RoutedBatch) => void;
}

/** Hooks whose route() waits until the test finishes it, and whose commit() answers with a script. */
function harness(commitResults: CommitResult[] = []) {
  const routing: Pending[] = [];
  const commits: CommitGroup[] = [];
  const events: string[] = [];
  const hooks: WindowHooks = {
    route: (raws) => new Promise((resolve) => routing.push({ raws, resolve })),
    commit: async (group) => {
      commits.push(group);
      return commitResults.shift() ?? { kind: 'committed' };
    },
    backpressure: (paused) => events.push(paused ? 'pause' : 'resume'),
    seek: (offset) => events.push(`seek ${offset}`),
    committed: (group) => events.push(`committed ${group.first}-${group.next}`),
    failed: (err) => events.push(`failed ${String(err)}`),
  };
  const finish = (p: Pending) => p.resolve({ byTopic: new Map([['out', p.raws.map((r) => ({ key: null, value: r.value!, headers: {} }))]]), counts: { in: p.raws.length, out: p.raws.length, rejected: 0, deadLettered: 0 } });
  return { routing, commits, events, hooks, finish };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('PartitionWindow', () => {
  it('processes up to `size` chunks at once and commits in offset order, ready chunks together', async () => {
    const h = harness();
    const w = new PartitionWindow(0, 0n, 3, 2, h.hooks);
    w.offer(range(0, 8), 7n);
    expect(h.routing.map((p) => p.raws[0]!.offset)).toEqual(['0', '2', '4']);
    // The later chunks finish first: nothing commits before the first, but their slots go to the next chunk.
    h.finish(h.routing[2]!);
    h.finish(h.routing[1]!);
    await settle();
    expect(h.commits).toHaveLength(0);
    expect(h.routing.map((p) => p.raws[0]!.offset)).toEqual(['0', '2', '4', '6']);
    h.finish(h.routing[0]!);
    await settle();
    expect(h.commits.map((g) => [g.first, g.next])).toEqual([[0n, 6n]]);
    expect(h.commits[0]!.byTopic.get('out')!.map((m) => m.value.toString())).toEqual(['0', '1', '2', '3', '4', '5']);
    h.finish(h.routing[3]!);
    await settle();
    expect(h.events.filter((e) => e.startsWith('committed'))).toEqual(['committed 0-6', 'committed 6-8']);
    expect(w.idle).toBe(true);
  });

  it('a slow oldest chunk does not hold the work back: finished chunks wait for it up to a bound', async () => {
    const h = harness();
    const size = 2;
    const w = new PartitionWindow(0, 0n, size, 1, h.hooks);
    w.offer(range(0, 100), 99n);
    expect(h.routing).toHaveLength(2);
    // The head (offset 0) straggles while every later chunk finishes at once.
    for (let i = 1; i < h.routing.length; i++) {
      h.finish(h.routing[i]!);
      await settle();
    }
    const held = size * HELD_PER_SLOT;
    // The window kept `size` chunks working until it held its bound in all, then stopped starting more.
    expect(h.routing).toHaveLength(held);
    expect(w.inFlight).toBe(held);
    expect(h.commits).toHaveLength(0);
    h.finish(h.routing[0]!);
    await settle();
    expect(h.commits[0]!.first).toBe(0n);
    expect(h.commits[0]!.next).toBe(BigInt(held));
    // Room again: work goes on.
    expect(h.routing.length).toBeGreaterThan(held);
  });

  it('skips records delivered again below its position (a re-fetch after a rejoin)', async () => {
    const h = harness();
    const w = new PartitionWindow(0, 0n, 4, 10, h.hooks);
    w.offer(range(0, 5), 4n);
    w.offer(range(0, 7), 6n);
    expect(h.routing.flatMap((p) => p.raws.map((r) => r.offset))).toEqual(['0', '1', '2', '3', '4', '5', '6']);
  });

  it('pauses the partition when its buffer holds its bound and resumes once it falls below', async () => {
    const h = harness();
    const w = new PartitionWindow(0, 0n, 1, 2, h.hooks);
    const bound = 2 * 1 * BUFFERED_PER_SLOT;
    w.offer(range(0, bound + 4), BigInt(bound + 3));
    expect(h.events).toEqual(['pause']);
    h.finish(h.routing[0]!);
    await settle();
    // `bound` records still queued behind the chunk in flight: still paused.
    expect(h.events).toEqual(['pause', 'committed 0-2']);
    h.finish(h.routing[1]!);
    await settle();
    expect(h.events).toEqual(['pause', 'committed 0-2', 'resume', 'committed 2-4']);
    expect(w.idle).toBe(false);
  });

  it('keeps outputs of a commit that reports them written already, and resets when another owner moved on', async () => {
    const h = harness([{ kind: 'already' }, { kind: 'reset', offset: 10n }]);
    const w = new PartitionWindow(0, 0n, 1, 2, h.hooks);
    w.offer(range(0, 4), 3n);
    h.finish(h.routing[0]!);
    await settle();
    expect(w.committedNext).toBe(2n);
    h.finish(h.routing[1]!);
    await settle();
    expect(h.events).toContain('seek 10');
    expect(w.committedNext).toBe(10n);
    expect(w.idle).toBe(true);
    // Records below the new position are not taken again.
    w.offer(range(8, 12), 11n);
    expect(h.routing.slice(2).flatMap((p) => p.raws.map((r) => r.offset))).toEqual(['10', '11']);
  });
});
