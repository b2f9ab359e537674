import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Kafka } from 'kafkajs';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RecordSerde } from '../serde/serde.js';
import { ReportAggregator } from './aggregate.js';
import { reportReaders, type CollectOptions } from './collect.js';
import { renderReport } from './html.js';

export interface LiveReportOptions extends CollectOptions {
  port: number;
  /** Address to listen on; loopback unless told otherwise. */
  host?: string;
  /** How often an open page fetches the report again. */
  refreshMs?: number;
  logger: Logger;
}

export interface LiveReport {
  readonly url: string;
  /** Resolves when a reader fails (the server keeps the last report). */
  readonly failed: Promise<Error>;
  close(): Promise<void>;
}

/**
 * The page re-fetches itself and swaps its body in place: charts and numbers follow the topics without a
 * reload, and scrolling or a selection elsewhere on the page is not lost.
 */
function refreshScript(refreshMs: number): string {
  return `<script>
addEventListener('DOMContentLoaded', () => setInterval(async () => {
  try {
    const response = await fetch(location.pathname, { cache: 'no-store' });
    if (!response.ok) return;
    const next = new DOMParser().parseFromString(await response.text(), 'text/html');
    document.body.replaceWith(next.body);
    document.title = next.title;
  } catch { /* the server is gone or restarting: try again at the next tick */ }
}, ${refreshMs}));
</script>`;
}

/**
 * `magpie report --serve`: follows the topic (and its rejects and dead letters) into the same aggregation as
 * the static report, and serves the page rendered from it on every request.
 */
export async function serveLiveReport(kafka: Kafka, serde: RecordSerde, options: LiveReportOptions): Promise<LiveReport> {
  const aggregator = new ReportAggregator({ topic: options.topic, rejects: options.rejects, deadLetter: options.deadLetter });
  const stop = new AbortController();
  options.signal?.addEventListener('abort', () => stop.abort(), { once: true });
  const head = refreshScript(options.refreshMs ?? 2_000);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/' && !req.url?.startsWith('/?'))) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(renderReport(aggregator.result(options.title, Date.now()), head));
  });
  server.listen(options.port, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { address, port } = server.address() as AddressInfo;
  const readers = reportReaders(kafka, serde, aggregator, { ...options, signal: stop.signal }, true).map((read) => read());
  const failed = Promise.race(readers).then(
    () => new Error('report reader stopped'),
    (err: unknown) => (err instanceof Error ? err : new Error(errorMessage(err))),
  );
  void failed.then((err) => {
    if (!stop.signal.aborted) options.logger.error({ err: err.message }, 'live report: reading the topics failed');
  });
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/`,
    failed,
    close: async () => {
      stop.abort();
      await Promise.allSettled(readers);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
