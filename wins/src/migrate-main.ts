/**
 * `npm run migrate-queues -w @redpacket/wins`: moves the wins queues of AMQP_URL (and
 * WINS_TOPOLOGY_SUFFIX) from classic to quorum queues, only while they are empty and unused.
 * Exit code 0 when both are quorum queues now, 1 when one was refused, 2 on bad input.
 */
import { parseEnv, topologySuffix, urlVar } from '@redpacket/lib';
import { z } from 'zod';
import { connectAmqp, DEFAULT_AMQP_URL, DEFAULT_TOPOLOGY, migrateToQuorum, topologyWithSuffix } from './index.js';

const env = parseEnv(
  'migrate-queues',
  z.object({ AMQP_URL: urlVar(DEFAULT_AMQP_URL), WINS_TOPOLOGY_SUFFIX: topologySuffix() }),
  process.env,
);
const topology = env.WINS_TOPOLOGY_SUFFIX ? topologyWithSuffix(env.WINS_TOPOLOGY_SUFFIX) : DEFAULT_TOPOLOGY;
const conn = await connectAmqp(env.AMQP_URL, 'redpacket-migrate-queues');
try {
  const results = await migrateToQuorum(conn, topology);
  const refused = results.some((r) => r.state === 'refused');
  for (const r of results) {
    const what = {
      absent: refused ? 'does not exist' : 'did not exist; declared as a quorum queue',
      current: 'is a quorum queue already',
      migrated: 'was an empty classic queue: deleted and declared again as a quorum queue',
      refused: `left alone: ${r.state === 'refused' ? r.reason : ''}`,
    }[r.state];
    console.log(`${r.queue}: ${what}`);
  }
  process.exitCode = refused ? 1 : 0;
} finally {
  await conn.close();
}
