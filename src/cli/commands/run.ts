import { createServer, type Server } from 'node:http';
import type { Command } from 'commander';
import type { Logger } from '../../core/logger.js';
import { StageMetrics } from '../../core/metrics.js';
import { runTopology } from '../../topology/build.js';
import { waitUntilDrained } from '../../topology/drain.js';
import { cliLogger, loadTopology, reportError, untilSignal, type GlobalOptions } from '../common.js';
import { startProgress } from '../progress.js';

interface RunOptions {
  stage?: string[];
  metricsPort?: string;
  exitWhenDone?: boolean;
  progressInterval: string;
  grace: string;
}

function serveMetrics(metrics: StageMetrics, port: number, logger: Logger): Server {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  server.listen(port, () => logger.info({ port }, 'metrics on /metrics'));
  return server;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run the stages of a topology in this process (all, or the ones named with --stage)')
    .argument('<topology>', 'topology YAML')
    .option('--stage <name...>', 'run only these stages (several processes may run the same stage: they share its consumer group)')
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port')
    .option('--exit-when-done', 'stop once the sources have finished and every stage has caught up')
    .option('--progress-interval <seconds>', 'seconds between progress lines', '10')
    .option('--grace <seconds>', 'on shutdown, seconds to let work in flight finish before abandoning it', '10')
    .action(async (file: string, opts: RunOptions) => {
      const global = program.opts<GlobalOptions>();
      const logger = cliLogger(global);
      const topology = await loadTopology(file, global);
      const metrics = new StageMetrics({ defaultMetrics: true });
      const server = opts.metricsPort ? serveMetrics(metrics, Number(opts.metricsPort), logger) : undefined;
      let running;
      try {
        running = await runTopology(topology, logger, { ...(opts.stage ? { stages: opts.stage } : {}), metrics });
      } catch (err) {
        // Nothing runs: say why and exit non-zero, whatever connections the failed start left behind.
        reportError(err);
        server?.close();
        process.exit(process.exitCode ?? 1);
      }
      const progress = startProgress(metrics, running.runners.keys(), Number(opts.progressInterval) * 1000, logger);
      const signalled = untilSignal(logger);
      // A stage whose consumer cannot recover ends the process (non-zero), so a supervisor restarts it.
      const fatal = new Promise<void>((resolve) => {
        for (const [name, runner] of running.runners) {
          runner.on('fatal', (err: unknown) => {
            logger.fatal({ stage: name, err: String(err) }, 'stage cannot continue; exiting so a supervisor can restart the process');
            process.exitCode = 1;
            resolve();
          });
        }
      });
      if (opts.exitWhenDone) {
        const stop = new AbortController();
        void signalled.then(() => stop.abort());
        void fatal.then(() => stop.abort());
        await Promise.race([waitUntilDrained(running, { signal: stop.signal }), fatal]).catch(() => {
          // A source that failed for good has said so through 'fatal'.
          process.exitCode = 1;
        });
      } else {
        await Promise.race([signalled, fatal]);
      }
      await running.stop(Number(opts.grace) * 1000);
      progress.stop();
      server?.close();
      process.exit(process.exitCode ?? 0);
    });
}
