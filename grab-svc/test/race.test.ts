import { afterAll, beforeAll, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';
import { raceProof } from './race.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

it('the race: 5,000 packets, 10,000 users each grabbing twice, all at once over gRPC', async () => {
  await raceProof(h);
});

it('the race with 4 sub-pools: one win per user across pools, failover when the home pool is dry', async () => {
  await raceProof(h, { subPools: 4 });
});
