/**
 * `npm run migrate-queues -w @redpacket/wins`: moves the wins queues of AMQP_URL (and
 * WINS_TOPOLOGY_SUFFIX) from classic to quorum queues, only while they are empty and unused.
 * Exit code 0 when both are quorum queues now, 1 when one was refused, 2 on bad input.
 */
import { connectAmqp, DEFAULT_AMQP_URL, DEFAULT_TOPOLOGY, migrateToQuorum, topologyWithSuffix } from './index.js';

const url = process.env['AMQP_URL'] || DEFAULT_AMQP_URL;
const suffix = process.env['WINS_TOPOLOGY_SUFFIX'] ?? '';
if (!/^[A-Za-z0-9_.-]*$/.test(suffix)) {
  console.error(
    'migrate-queues: bad environment variable WINS_TOPOLOGY_SUFFIX: letters, digits, "_", "." and "-" only',
  );
  process.exit(2);
}
const topology = suffix ? topologyWithSuffix(suffix) : DEFAULT_TOPOLOGY;
const conn = await connectAmqp(url, 'redpacket-migrate-queues');
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
