/**
 * Committed offsets that a pending transaction cannot make stale (KIP-447's `require_stable`).
 *
 * A transaction's offsets become the group's committed offsets only after the broker has written its commit
 * marker and then, on a separate thread, moved them into its cache. Until then an OffsetFetch below version 7
 * answers with the offset from before the transaction. kafkajs 2.2 speaks OffsetFetch up to version 4, so a stage
 * that fences a partition and reads its committed offset at once (after a rebalance, after a commit whose answer
 * was lost to a broker failure) could read that older offset and process records a second time whose outputs were
 * committed already.
 *
 * This adds OffsetFetch version 7 to kafkajs' request table, used with `require_stable` for the reads made inside
 * `readStableOffsets`: while a transactional offset commit for a partition is pending, the broker answers
 * UNSTABLE_OFFSET_COMMIT and the read is retried, so it sees the offsets only once they are settled (what the Java
 * consumer does under `isolation.level=read_committed`). kafkajs' own reads (a consumer joining its group) keep
 * version 4: a stale start there is harmless, the stage runner skips what its windows hold or committed.
 * Brokers older than 2.5 (no version 7) keep version 4.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { sleep } from '../core/retry.js';

interface Encoder {
  writeInt32(v: number): Encoder;
  writeBoolean(v: boolean): Encoder;
  writeUVarIntString(v: string): Encoder;
  writeUVarIntArray(items: Encoder[]): Encoder;
  writeUVarIntBytes(v?: Buffer): Encoder;
}
type EncoderClass = new () => Encoder;

interface Decoder {
  readInt16(): number;
  readInt32(): number;
  readInt64(): { toString(): string };
  readUVarIntString(): string | null;
  readUVarIntArray<T>(read: (d: Decoder) => T): T[];
  readTaggedFields(): unknown;
}
type DecoderClass = new (data: Buffer) => Decoder;

interface OffsetFetchTopic {
  topic: string;
  partitions: { partition: number }[];
}
interface ProtocolDefinition {
  versions: string[];
  protocol: (args: { version: number }) => (request: { groupId: string; topics: OffsetFetchTopic[] }) => unknown;
}

/** The OffsetFetch version added here. */
export const STABLE_OFFSET_FETCH_VERSION = 7;

let installed = false;
const stable = new AsyncLocalStorage<true>();

/** How long a read waits for pending transactions: longer than a transaction may stay open (its timeout). */
export const STABLE_READ_TIMEOUT_MS = 90_000;

function isUnstable(err: unknown): boolean {
  return (err as { type?: string } | undefined)?.type === 'UNSTABLE_OFFSET_COMMIT';
}

/**
 * Runs `read` (kafkajs admin calls that fetch committed offsets) so that its OffsetFetch requests ask for stable
 * offsets, retrying while the broker answers that a transaction still holds some, for up to `timeoutMs`.
 */
export async function readStableOffsets<T>(read: () => Promise<T>, timeoutMs = STABLE_READ_TIMEOUT_MS): Promise<T> {
  installStableOffsetFetch();
  const deadline = Date.now() + timeoutMs;
  for (let delay = 20; ; delay = Math.min(delay * 2, 1_000)) {
    try {
      return await stable.run(true, read);
    } catch (err) {
      if (!isUnstable(err) || Date.now() + delay > deadline) throw err;
      await sleep(delay);
    }
  }
}

/** Adds OffsetFetch v7 (require_stable, inside readStableOffsets only) to kafkajs, once per process. Idempotent. */
export function installStableOffsetFetch(): void {
  if (installed) return;
  const require = createRequire(import.meta.url);
  const definition = require('kafkajs/src/protocol/requests/offsetFetch/index.js') as ProtocolDefinition;
  const Encoder = require('kafkajs/src/protocol/encoder.js') as EncoderClass;
  const Decoder = require('kafkajs/src/protocol/decoder.js') as DecoderClass;
  const { OffsetFetch: apiKey } = require('kafkajs/src/protocol/requests/apiKeys.js') as { OffsetFetch: number };
  // Partition errors (UNSTABLE_OFFSET_COMMIT included) turn into kafkajs' errors the same way as in version 4.
  const { parse } = require('kafkajs/src/protocol/requests/offsetFetch/v2/response.js') as { parse: (data: unknown) => Promise<unknown> };
  const original = definition.protocol;
  const highestOriginal = Math.max(...definition.versions.map(Number));

  const request = ({ groupId, topics }: { groupId: string; topics: OffsetFetchTopic[] }) => ({
    apiKey,
    apiVersion: STABLE_OFFSET_FETCH_VERSION,
    apiName: 'OffsetFetch',
    // Flexible version: request header v2, whose tagged fields kafkajs leaves to the body; compact types.
    encode: async () =>
      new Encoder()
        .writeUVarIntBytes()
        .writeUVarIntString(groupId)
        .writeUVarIntArray(
          topics.map(({ topic, partitions }) =>
            new Encoder()
              .writeUVarIntString(topic)
              .writeUVarIntArray(partitions.map(({ partition }) => new Encoder().writeInt32(partition)))
              .writeUVarIntBytes(),
          ),
        )
        .writeBoolean(true)
        .writeUVarIntBytes(),
  });

  const decode = async (raw: Buffer) => {
    const d = new Decoder(raw);
    d.readTaggedFields(); // response header v1
    const throttleTime = d.readInt32();
    const responses = d.readUVarIntArray((t) => {
      const topic = t.readUVarIntString();
      const partitions = t.readUVarIntArray((p) => {
        const partition = p.readInt32();
        const offset = p.readInt64().toString();
        p.readInt32(); // committed leader epoch
        const metadata = p.readUVarIntString();
        const errorCode = p.readInt16();
        p.readTaggedFields();
        return { partition, offset, metadata, errorCode };
      });
      t.readTaggedFields();
      return { topic, partitions };
    });
    const errorCode = d.readInt16();
    d.readTaggedFields();
    return { throttleTime: 0, clientSideThrottleTime: throttleTime, responses, errorCode };
  };

  definition.versions = [...definition.versions.filter((v) => Number(v) !== STABLE_OFFSET_FETCH_VERSION), String(STABLE_OFFSET_FETCH_VERSION)];
  definition.protocol = ({ version }) => {
    if (version >= STABLE_OFFSET_FETCH_VERSION && stable.getStore()) return (args) => ({ request: request(args), response: { decode, parse } });
    return original({ version: Math.min(version, highestOriginal) });
  };
  installed = true;
}
