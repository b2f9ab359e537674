/**
 * `magpie report --serve` in headless Chromium on the real broker: records written after the page opened show
 * on it without a reload (the page's own document, marked before the new records, is still the one shown).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ensureTopics } from '../../../src/kafka/admin.js';
import { createKafka } from '../../../src/kafka/client.js';
import type { ReportData } from '../../../src/report/aggregate.js';
import { serveLiveReport, type LiveReport } from '../../../src/report/live.js';
import { createSerde } from '../../../src/serde/serde.js';
import { kafkaConfigSchema } from '../../../src/topology/schema.js';
import { PROJECT_ROOT, uniquePrefix } from '../../support/broker.js';
import { eventually, makeConversation, produceRecords } from '../../support/records.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const kafka = createKafka(kafkaConfigSchema.parse({ brokers: [inject('kafkaBootstrap')] }), logger);
const serde = createSerde();

/** A headless Chromium driven over the DevTools protocol: navigate, then evaluate expressions in the page. */
class Browser {
  private next = 1;
  private readonly waiting = new Map<number, (result: { result?: { result?: { value?: unknown } }; error?: unknown }) => void>();

  private constructor(
    private readonly child: ReturnType<typeof spawn>,
    private readonly socket: WebSocket,
    private readonly profile: string,
  ) {
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: { result?: { value?: unknown } }; error?: unknown };
      if (message.id !== undefined) this.waiting.get(message.id)?.(message);
    });
  }

  static async open(): Promise<Browser> {
    const profile = await mkdtemp(path.join(tmpdir(), 'magpie-chromium-live-'));
    const child = spawn('/usr/bin/chromium', [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    const browserUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('Chromium did not start its DevTools endpoint')), 60_000);
      createInterface({ input: child.stderr! }).on('line', (line) => {
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    const http = new URL(browserUrl);
    const targets = (await (await fetch(`http://${http.host}/json/list`)).json()) as { type: string; webSocketDebuggerUrl: string }[];
    const page = targets.find((t) => t.type === 'page');
    if (!page) throw new Error('Chromium has no page target');
    const socket = new WebSocket(page.webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      socket.addEventListener('open', resolve, { once: true });
      socket.addEventListener('error', reject, { once: true });
    });
    return new Browser(child, socket, profile);
  }

  send(method: string, params: Record<string, unknown>): Promise<{ result?: { result?: { value?: unknown } }; error?: unknown }> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  async evaluate<T>(expression: string): Promise<T> {
    const reply = await this.send('Runtime.evaluate', { expression, returnByValue: true });
    if (reply.error) throw new Error(JSON.stringify(reply.error));
    return reply.result?.result?.value as T;
  }

  async close(): Promise<void> {
    this.socket.close();
    // Chromium's helper processes may still be writing the profile for a moment after the kill: wait for the
    // browser to exit, and let rm retry on a directory that was refilled while it ran.
    const exited = this.child.exitCode !== null || this.child.signalCode !== null ? Promise.resolve() : new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
    await rm(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}

describe('live report page', () => {
  let live: LiveReport | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    await run('bash', [path.join(PROJECT_ROOT, 'scripts', 'ensure-chromium.sh')], { timeout: 600_000 });
  });
  afterAll(async () => {
    await browser?.close();
    await live?.close();
  });

  it('shows records written after the page opened, without a reload', async () => {
    const prefix = uniquePrefix('live-report');
    const topics = { sink: `${prefix}sink`, rejects: `${prefix}rejects` };
    await ensureTopics(kafka, [
      { name: topics.sink, partitions: 2, replicationFactor: 1 },
      { name: topics.rejects, partitions: 1, replicationFactor: 1 },
    ]);
    await produceRecords(kafka, serde, topics.sink, 'magpie.Conversation', [1, 2, 3].map((i) => makeConversation(i)));
    live = await serveLiveReport(kafka, serde, { topic: topics.sink, rejects: topics.rejects, title: 'live test', port: 0, refreshMs: 300, logger });
    browser = await Browser.open();
    await browser.send('Page.navigate', { url: live.url });
    const totals = () => browser!.evaluate<ReportData['totals'] | null>(`(() => { const s = document.getElementById('report-data'); return s ? JSON.parse(s.textContent).totals : null; })()`);
    await eventually(async () => (await totals())?.records === 3, 60_000, 250);
    // A mark on this document: a reload would start a new one without it.
    await browser.evaluate('window.magpieSameDocument = 42');

    await produceRecords(kafka, serde, topics.sink, 'magpie.Conversation', [4, 5, 6, 7].map((i) => makeConversation(i)));
    const reject = { stage: 'filter', rule: 'input_quality', reason: 'poor', uuid: 'r-1', record_json: '{}', source_topic: null, source_partition: null, source_offset: null, rejected_at: Date.now() };
    await produceRecords(kafka, serde, topics.rejects, 'magpie.Rejected', [reject]);

    await eventually(async () => {
      const t = await totals();
      return t?.records === 7 && t.rejects === 1;
    }, 60_000, 250);
    expect(await browser.evaluate('window.magpieSameDocument')).toBe(42);
    const tiles = await browser.evaluate<string[]>(`[...document.querySelectorAll('.tile')].map((t) => t.innerText.replace(/\\s+/g, ' ').trim())`);
    expect(tiles).toContain('7 records');
    expect(tiles).toContain('1 rejects');
    // The newest records are shown as examples: one written after the page opened is among them.
    const latest = await browser.evaluate<string>(`document.querySelector('[data-chart="latest-records"]').innerText`);
    expect(latest).toContain(makeConversation(7).instruction);
  });
});
