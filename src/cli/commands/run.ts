import { createServer, type Server } from 'node:http';
import type { Command } from 'commander';
import type { Logger } from '../../core/logger.js';
import type { StageMetrics } from '../../core/metrics.js';
import { cliLogger, loadTopology, probeTopology, reportError, untilSignal, type GlobalOptions } from '../common.js';

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
    .option('--progress-interval <seconds>', 'without a terminal (or with --log-format json): seconds between progress log lines', '10')
    .option('--grace <seconds>', 'on shutdown, seconds to let work in flight finish before abandoning it', '10')
    .action(async (file: string, opts: RunOptions) => {
      const global = program.opts<GlobalOptions>();
      const logger = await cliLogger(global);
      const topology = await loadTopology(file, global);
      const [{ StageMetrics }, { runTopology }, { waitUntilDrained }, { watchConsumerLag }, { startProgress }, { logFormatFor, stderrTerm }] = await Promise.all([
        import('../../core/metrics.js'),
        import('../../topology/build.js'),
        import('../../topology/drain.js'),
        import('../../kafka/consumer-lag.js'),
        import('../progress.js'),
        import('../output.js'),
      ]);
      await probeTopology(topology);
      const metrics = new StageMetrics({ defaultMetrics: true });
      const server = opts.metricsPort ? serveMetrics(metrics, Number(opts.metricsPort), logger) : undefined;
      let running;
      try {
        running = await runTopology(topology, logger, { ...(opts.stage ? { stages: opts.stage } : {}), metrics });
      } catch (err) {
        // Nothing runs: say why and exit non-zero, whatever connections the failed start left behind.
        reportError(err, global.verbose === true);
        server?.close();
        process.exit(process.exitCode ?? 1);
      }
      const consumers = topology.stages.filter((s) => running.runners.has(s.name) && s.input !== undefined);
      const lag = watchConsumerLag(running.kafka, consumers.map((s) => ({ stage: s.name, groupId: s.groupId, topic: s.input! })), metrics, logger);
      const progress = startProgress(metrics, running.runners.keys(), {
        intervalMs: Number(opts.progressInterval) * 1000,
        logger,
        ...(logFormatFor(global.logFormat, process.stderr) === 'pretty' ? { terminal: stderrTerm() } : {}),
      });
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
      await lag.stop();
      await running.stop(Number(opts.grace) * 1000);
      progress.stop();
      server?.close();
      process.exit(process.exitCode ?? 0);
    });
}
