/**
 * Test helpers around scripts/kafka.sh: a real Apache Kafka (KRaft) broker or 3-node cluster on 127.0.0.1,
 * run from the Maven Central jars. Each cluster has a name; its state, configs and logs live in
 * `$MAGPIE_RUN_DIR/kafka/<name>` (default `<project>/.magpie/kafka/<name>`, node logs in `node-<n>/server.log`).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KAFKA_SCRIPT = path.join(PROJECT_ROOT, 'scripts', 'kafka.sh');

export interface StartBrokerOptions {
  /** Cluster name (run-dir name). Default 'local'. */
  name?: string;
  /** 1 (default) or 3 combined broker+controller nodes. */
  nodes?: 1 | 3;
  /** Fixed client port for node 1 (default: a free port). */
  port?: number;
  /** Remove any previous state of this cluster first (stops leftover processes). Default false. */
  fresh?: boolean;
  /** Upper bound for the start command, ms. Default 240 000 (the script itself gives up after 120 s). */
  timeoutMs?: number;
  /**
   * A secured cluster (set when it is created): SASL_SSL with SCRAM-SHA-512, ACLs enforced, the super user
   * `admin` plus these SCRAM users.
   */
  secure?: { users?: string[] };
}

/** Where a secured cluster's clients find the CA to trust and each SCRAM user's password. */
export interface BrokerSecurity {
  /** PEM of the CA that signed the broker certificate. */
  readonly caFile: string;
  /** The file holding a SCRAM user's password (mode 0600); the super user is `admin`. */
  passwordFile(user: string): string;
}

export interface Broker {
  readonly name: string;
  readonly nodes: number;
  /** "host:port,host:port,..." for every node, in node order. */
  readonly bootstrap: string;
  /** The bootstrap entries; brokers[n - 1] is node n. */
  readonly brokers: string[];
  /** Set for a secured cluster. */
  readonly security: BrokerSecurity | undefined;
  /** Stops every node (SIGTERM, SIGKILL after 30 s). State stays on disk; see clean(). */
  stop(): Promise<void>;
  /** Stops node n (1-based) of the cluster; `kill: true` sends SIGKILL, like a crash. */
  stopNode(n: number, opts?: { kill?: boolean }): Promise<void>;
  /** Starts node n again with its previous config and storage; resolves once the cluster sees it. */
  startNode(n: number): Promise<void>;
  /** Stops the cluster and removes its run directory. */
  clean(): Promise<void>;
  /** The last lines of every node's server.log. */
  logTail(lines?: number): Promise<string>;
}

/** Run directory of a named cluster (mirrors scripts/kafka.sh). */
export function kafkaRunDir(name: string): string {
  const root = process.env.MAGPIE_RUN_DIR ?? path.join(PROJECT_ROOT, '.magpie');
  return path.join(root, 'kafka', name);
}

/** The last `lines` lines of every node's server.log of cluster `name` (empty string when there are none). */
export async function brokerLogTail(name: string, lines = 40): Promise<string> {
  const dir = kafkaRunDir(name);
  let entries: string[];
  try {
    entries = (await readdir(dir)).filter((e) => /^node-\d+$/.test(e)).sort();
  } catch {
    return '';
  }
  const parts: string[] = [];
  for (const node of entries) {
    for (const file of ['server.log', 'stdout.log']) {
      const p = path.join(dir, node, file);
      try {
        const text = await readFile(p, 'utf8');
        if (text.trim() === '') continue;
        const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
        parts.push(`----- ${p} (last ${lines} lines) -----\n${tail}`);
      } catch {
        // missing log: the node never started
      }
    }
  }
  return parts.join('\n');
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

/**
 * Runs `bash scripts/kafka.sh ...args` and returns its trimmed stdout. On failure the error message carries the
 * command, the exit status, the script's stderr and the tail of the cluster's broker logs.
 */
export function kafkaSh(args: string[], opts: { timeoutMs?: number; name?: string } = {}): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 240_000;
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [KAFKA_SCRIPT, ...args],
      { cwd: PROJECT_ROOT, env: process.env, timeout: timeoutMs, killSignal: 'SIGTERM', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (!error) {
          resolve(stdout.trim());
          return;
        }
        void (async () => {
          const err = error as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
          const status = err.killed
            ? `timed out after ${timeoutMs} ms`
            : err.signal
              ? `killed by ${err.signal}`
              : `exit code ${String(err.code)}`;
          let message = `scripts/kafka.sh ${args.join(' ')} failed (${status})`;
          if (stderr.trim()) message += `\n--- stderr ---\n${lastLines(stderr, 120)}`;
          // The script prints log tails itself when a node dies or times out; add them when it could not.
          if (opts.name && !stderr.includes('----- node')) {
            const logs = await brokerLogTail(opts.name, 40).catch(() => '');
            if (logs) message += `\n${logs}`;
          }
          reject(new Error(message, { cause: error }));
        })();
      },
    );
  });
}

/**
 * Starts (or reuses, if already running) the named cluster and resolves once every node accepts clients and
 * the controller is ready (topic creation works). `stop()` stops it; the run directory stays for inspection.
 */
export async function startBroker(options: StartBrokerOptions = {}): Promise<Broker> {
  const name = options.name ?? 'local';
  const nodes = options.nodes ?? 1;
  if (nodes !== 1 && nodes !== 3) throw new Error(`startBroker: nodes must be 1 or 3, got ${String(nodes)}`);
  const timeoutMs = options.timeoutMs ?? 240_000;
  const base = ['--name', name];

  if (options.fresh) await kafkaSh(['clean', ...base], { name, timeoutMs: 120_000 });
  const args = ['start', ...base, '--nodes', String(nodes)];
  if (options.port !== undefined) args.push('--port', String(options.port));
  if (options.secure) args.push('--secure', ...(options.secure.users?.length ? ['--users', options.secure.users.join(',')] : []));
  let out: string;
  try {
    out = await kafkaSh(args, { name, timeoutMs });
  } catch (e) {
    // If our own timeout killed the script mid-start, do not leave JVMs behind.
    await kafkaSh(['stop', ...base], { name, timeoutMs: 120_000 }).catch(() => undefined);
    throw e;
  }
  const bootstrap = out.split('\n').pop()?.trim() ?? '';
  if (!/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/.test(bootstrap)) {
    throw new Error(`scripts/kafka.sh start printed no bootstrap string; stdout was:\n${out}`);
  }
  const brokers = bootstrap.split(',');
  const checkNode = (n: number): void => {
    if (!Number.isInteger(n) || n < 1 || n > nodes) throw new Error(`node must be 1..${nodes}, got ${String(n)}`);
  };

  const runDir = kafkaRunDir(name);
  const security: BrokerSecurity | undefined = options.secure
    ? { caFile: path.join(runDir, 'tls', 'ca.crt'), passwordFile: (user) => path.join(runDir, 'users', `${user}.password`) }
    : undefined;
  return {
    name,
    nodes,
    bootstrap,
    brokers,
    security,
    async stop() {
      await kafkaSh(['stop', ...base], { name, timeoutMs: 120_000 });
    },
    async stopNode(n, opts) {
      checkNode(n);
      await kafkaSh(['stop', ...base, '--node', String(n), ...(opts?.kill ? ['--kill'] : [])], { name, timeoutMs: 120_000 });
    },
    async startNode(n) {
      checkNode(n);
      await kafkaSh(['start', ...base, '--node', String(n)], { name, timeoutMs });
    },
    async clean() {
      await kafkaSh(['clean', ...base], { name, timeoutMs: 120_000 });
    },
    logTail(lines) {
      return brokerLogTail(name, lines);
    },
  };
}

/**
 * A fresh topic-name prefix for one test, e.g. `t-dedupe-restart-3f9a1c2b`: only characters legal in topic
 * names, short enough to leave room for stage suffixes, random so reruns never see old records.
 */
export function uniquePrefix(testName: string): string {
  const slug =
    testName
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 40)
      .replace(/-+$/, '') || 'test';
  return `t-${slug}-${randomBytes(4).toString('hex')}`;
}
