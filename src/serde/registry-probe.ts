import { MagpieError } from '../core/errors.js';
import { reachable } from '../core/reachable.js';

/**
 * Fails fast with SERDE_REGISTRY_UNREACHABLE when the schema registry does not accept connections, instead of
 * every record's encode retrying against it.
 */
export async function probeSchemaRegistry(url: string, timeoutMs = 3_000): Promise<void> {
  const u = new URL(url);
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  try {
    await reachable(u.hostname.replace(/^\[|\]$/g, ''), port, timeoutMs);
  } catch (err) {
    throw new MagpieError('SERDE_REGISTRY_UNREACHABLE', `the schema registry at ${u.origin} is not answering (${(err as Error).message}): start it, or fix serde.registry.url in the topology`, { details: { url: u.origin } });
  }
}
