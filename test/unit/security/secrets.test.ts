/**
 * Secrets never reach log output: the Kafka SASL password and the inference API key are read from the
 * environment or a secrets file, redacted from logged objects, and scrubbed from error messages, including a
 * server's error text that echoes the key back. A topology cannot carry a SASL password itself.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, errorMessage } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { backendConfigSchema, createBackend } from '../../../src/inference/factory.js';
import { StageMetrics } from '../../../src/core/metrics.js';
import { readSecretFile } from '../../../src/core/secrets.js';
import { createKafka } from '../../../src/kafka/client.js';
import { deadLetterMessage, rejectMessage } from '../../../src/kafka/route.js';
import { ReportAggregator } from '../../../src/report/aggregate.js';
import { renderReport } from '../../../src/report/html.js';
import type { DeadLetter, Rejected } from '../../../src/serde/records.generated.js';
import { createSerde } from '../../../src/serde/serde.js';
import { parseTopology } from '../../../src/topology/load.js';
import { makeInstruction } from '../../support/records.js';

const SASL_PASSWORD = 'kafka-S3cret-pa55word-7f3a';
const API_KEY = 'sk-live-9b1e4c7d2a8f6e3b5c0d';

/** A logger writing into a string, as every process logger does (pino JSON lines). */
function capture() {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const logger = createLogger({ level: 'debug' }, destination);
  return { logger, text: () => chunks.join('') };
}

/** An OpenAI-compatible server that fails with the request's Authorization header in its error text. */
let echoServer: Server;
let echoUrl: string;
let seenAuthorization: string | undefined;

beforeAll(async () => {
  echoServer = createServer((req, res) => {
    seenAuthorization = req.headers.authorization;
    const status = req.url?.includes('/v1/chat') ? 500 : 401;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `rejected credentials: ${req.headers.authorization ?? 'none'}` } }));
  });
  await new Promise<void>((resolve) => echoServer.listen(0, '127.0.0.1', resolve));
  echoUrl = `http://127.0.0.1:${(echoServer.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  await new Promise((resolve) => echoServer.close(resolve));
});

describe('secrets in logs', () => {
  it('redacts the SASL password and the API key from logged config objects', () => {
    const { logger, text } = capture();
    const sasl = { mechanism: 'scram-sha-512', username: 'magpie', password: SASL_PASSWORD };
    logger.info({ kafka: { brokers: ['broker:9093'], ssl: true, sasl } }, 'kafka config');
    logger.info({ sasl }, 'sasl block');
    logger.info({ password: SASL_PASSWORD, apiKey: API_KEY }, 'flat');
    logger.info({ backend: { name: 'gen', baseUrls: ['https://gpu/v1'], apiKey: API_KEY } }, 'backend options');
    logger.child({ stage: 'respond' }).warn({ request: { headers: { authorization: `Bearer ${API_KEY}` } } }, 'request');
    logger.info({ headers: { authorization: `Bearer ${API_KEY}` } }, 'headers');
    const out = text();
    expect(out).toContain('[redacted]');
    expect(out).toContain('"username":"magpie"');
    expect(out).not.toContain(SASL_PASSWORD);
    expect(out).not.toContain(API_KEY);
  });

  it('keeps the API key out of errors and retry logs when the server echoes it back', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'magpie-secret-'));
    const keyFile = path.join(dir, 'api-key');
    writeFileSync(keyFile, `${API_KEY}\n`);
    const { logger, text } = capture();
    const config = backendConfigSchema.parse({ type: 'openai', baseUrl: echoUrl, model: 'm', server: 'generic', apiKeyFile: keyFile, retries: 1, timeoutMs: 5_000 });
    const backend = await createBackend('gen', config, logger);
    try {
      // 401 (not retried) on completions; 500 (retried once, logged) on chat.
      const failures: unknown[] = [];
      await backend.complete({ prompt: 'hi', temperature: 0, topP: 1, maxTokens: 4 }).catch((err: unknown) => failures.push(err));
      await backend.chat({ messages: [{ role: 'user', content: 'hi' }], temperature: 0, topP: 1, maxTokens: 4 }).catch((err: unknown) => failures.push(err));
      expect(seenAuthorization).toBe(`Bearer ${API_KEY}`);
      expect(failures).toHaveLength(2);
      for (const err of failures) {
        expect(errorMessage(err)).toContain('rejected credentials: Bearer [redacted]');
        // How stages and the runner log a failure: the error object, and its message as a field.
        logger.error({ err }, 'request failed');
        logger.warn({ err: errorMessage(err), code: (err as { code?: string }).code }, 'chunk failed before commit; it will be retried');
      }
    } finally {
      await backend.close();
    }
    const out = text();
    expect(out).toContain('inference request failed; retrying');
    expect(out).toContain('rejected credentials');
    expect(out).not.toContain(API_KEY);
  });

  it('keeps the SASL password out of kafkajs logs when the connection fails', async () => {
    process.env.MAGPIE_TEST_SASL_PASSWORD = SASL_PASSWORD;
    // A port that refuses connections: kafkajs logs the failure through the project logger.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const { logger, text } = capture();
    const topology = parseTopology(
      `name: t\nkafka:\n  brokers: 127.0.0.1:${port}\n  connectionTimeoutMs: 500\n  sasl: { mechanism: scram-sha-256, username: magpie, passwordEnv: MAGPIE_TEST_SASL_PASSWORD }\nstages:\n  - { name: copy, type: pass-through, input: in, output: out }\n`,
      'inline.yaml',
    );
    const kafka = createKafka(topology.kafka, logger);
    const admin = kafka.admin();
    // Only the first failed attempt is needed; the client's own retries are cut short by the disconnect.
    void admin.connect().catch(() => undefined);
    for (let i = 0; i < 100 && !/ECONNREFUSED/.test(text()); i++) await new Promise((r) => setTimeout(r, 20));
    await admin.disconnect();
    logger.info({ kafka: topology.kafka }, 'topology kafka block');
    const out = text();
    expect(out).toContain('MAGPIE_TEST_SASL_PASSWORD');
    expect(out).toMatch(/ECONNREFUSED|Connection error/);
    expect(out).not.toContain(SASL_PASSWORD);
    delete process.env.MAGPIE_TEST_SASL_PASSWORD;
  });
});

describe('secrets in topologies', () => {
  const withSasl = (sasl: string) => `name: t\nkafka:\n  brokers: b:9092\n  sasl: ${sasl}\nstages:\n  - { name: copy, type: pass-through, input: in, output: out }\n`;

  it('rejects a SASL block without passwordEnv or passwordFile', () => {
    expect(() => parseTopology(withSasl('{ mechanism: scram-sha-512, username: magpie }'), 'x.yaml')).toThrow(/x\.yaml: kafka\.sasl: give passwordEnv or passwordFile/);
  });

  it('rejects a password written into the topology itself', () => {
    expect(() => parseTopology(withSasl(`{ mechanism: plain, username: magpie, password: ${SASL_PASSWORD} }`), 'x.yaml')).toThrow(ConfigError);
  });

  it('reads the password from a secrets file, and says which variable is missing otherwise', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'magpie-secret-'));
    const file = path.join(dir, 'sasl');
    writeFileSync(file, `${SASL_PASSWORD}\n`);
    const { logger } = capture();
    const fromFile = parseTopology(withSasl(`{ mechanism: scram-sha-256, username: magpie, passwordFile: ${file} }`), 'x.yaml');
    expect(() => createKafka(fromFile.kafka, logger)).not.toThrow();
    const fromEnv = parseTopology(withSasl('{ mechanism: scram-sha-256, username: magpie, passwordEnv: MAGPIE_TEST_UNSET_PASSWORD }'), 'x.yaml');
    expect(() => createKafka(fromEnv.kafka, logger)).toThrow(/kafka\.sasl: environment variable MAGPIE_TEST_UNSET_PASSWORD is not set/);
  });
});

describe('registered secrets', () => {
  it('are scrubbed from every log line, in messages, fields and errors', async () => {
    const { createLogger, registerSecret } = await import('../../../src/core/logger.js');
    const lines: string[] = [];
    const logger = createLogger({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const key = 'sk-registered-secret-1234';
    registerSecret(key);
    logger.info({ url: `http://x/?key=${key}`, nested: { note: `bearer ${key}` } }, `calling with ${key}`);
    logger.error({ err: new Error(`server echoed ${key}`) }, 'failed');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).not.toContain(key);
    expect(lines.join('\n')).toContain('[redacted]');
  });
});

describe('secrets files', () => {
  it('warns when a secrets file is readable by others, and reads it all the same', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'magpie-secret-'));
    const loose = path.join(dir, 'loose');
    const tight = path.join(dir, 'tight');
    writeFileSync(loose, `${SASL_PASSWORD}\n`);
    chmodSync(loose, 0o644);
    writeFileSync(tight, `${SASL_PASSWORD}\n`, { mode: 0o600 });
    chmodSync(tight, 0o600);
    const { logger, text } = capture();
    expect(readSecretFile(tight, 'kafka.sasl', logger)).toBe(SASL_PASSWORD);
    expect(text()).toBe('');
    expect(readSecretFile(loose, 'kafka.sasl', logger)).toBe(SASL_PASSWORD);
    const out = text();
    expect(out).toContain(`kafka.sasl: secrets file ${loose} is readable by others (mode 0644); restrict it to 0600`);
    expect(out).not.toContain(SASL_PASSWORD);
  });

  it('warns through the Kafka client and the inference backend alike', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'magpie-secret-'));
    const file = path.join(dir, 'mounted');
    writeFileSync(file, `${API_KEY}\n`);
    chmodSync(file, 0o640);
    const { logger, text } = capture();
    const topology = parseTopology(`name: t\nkafka:\n  brokers: b:9092\n  sasl: { mechanism: scram-sha-512, username: magpie, passwordFile: ${file} }\nstages:\n  - { name: copy, type: pass-through, input: in, output: out }\n`, 'x.yaml');
    createKafka(topology.kafka, logger);
    const backend = await createBackend('gen', backendConfigSchema.parse({ type: 'openai', baseUrl: echoUrl, model: 'm', server: 'generic', apiKeyFile: file }), logger);
    await backend.close();
    const out = text();
    expect(out).toContain('kafka.sasl: secrets file');
    expect(out).toContain('backends.gen.apiKeyFile: secrets file');
    expect(out).not.toContain(API_KEY);
  });
});

describe('secrets in records, metrics and the report', () => {
  it('never reach reject or dead-letter records, metrics labels or the HTML report', async () => {
    const { registerSecret } = await import('../../../src/core/logger.js');
    registerSecret(API_KEY);
    const serde = createSerde();
    const target = { name: 'respond', rejects: 'rejects', deadLetter: 'dead-letter' };
    const raw = { topic: 'in', partition: 0, offset: '7', key: null, value: Buffer.from('{}'), headers: {}, timestamp: '0' };
    // A server error quoting the key, as the echo server above does, becomes the reason of both records.
    const reason = `inference failed: rejected credentials: Bearer ${API_KEY}`;
    const rejectedMsg = await rejectMessage(serde, target, { rule: 'server-said-no', reason }, makeInstruction(1), raw);
    const deadMsg = await deadLetterMessage(serde, target, raw, 'INFERENCE_HTTP', reason, 3);
    const rejected = await serde.decode<Rejected>('magpie.Rejected', rejectedMsg.value, rejectedMsg.headers);
    const dead = await serde.decode<DeadLetter>('magpie.DeadLetter', deadMsg.value, deadMsg.headers);
    expect(rejected.reason).toBe('inference failed: rejected credentials: Bearer [redacted]');
    expect(dead.reason).toBe('inference failed: rejected credentials: Bearer [redacted]');
    expect(rejectedMsg.value.toString('latin1')).not.toContain(API_KEY);
    expect(deadMsg.value!.toString('latin1')).not.toContain(API_KEY);

    const metrics = new StageMetrics();
    metrics.record('respond', { in: 1, out: 0, rejected: 1, deadLettered: 1 });
    metrics.retries.inc({ stage: 'respond' });
    const exposition = await metrics.registry.metrics();
    expect(exposition).toContain('magpie_records_dead_lettered_total{stage="respond"} 1');
    expect(exposition).not.toContain(API_KEY);

    const agg = new ReportAggregator({ topic: 'sink', rejects: 'rejects' });
    agg.addReject(rejected);
    agg.addDeadLetter(dead);
    const html = renderReport(agg.result('Run', 1_750_000_600_000));
    expect(html).toContain('rejected credentials: Bearer [redacted]');
    expect(html).not.toContain(API_KEY);
  });
});
