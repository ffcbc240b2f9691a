/**
 * `redpacket deadletters list|redrive`: the real binary against a GiftService started here on the
 * real MySQL, with dead letters recorded the way gift-svc records them.
 */
import { startServer, type RunningServer } from '@redpacket/lib';
import { testSigner } from '@redpacket/lib/testing';
import type { Pool } from '@redpacket/db';
import { encodeWin } from '@redpacket/wins';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordDeadLetter } from '../../gift-svc/src/awards-writer.js';
import { createGiftServer } from '../../gift-svc/src/server.js';
import { fundEscrows, requireMysql, silent, uid } from '../../gift-svc/test/harness.js';
import { Reconciliation } from '@redpacket/proto';
import { reconciliationRows } from '../src/commands/campaign.js';
import { cli, cliJson } from './helpers.js';

let pool: Pool;
let server: RunningServer;
let env: Record<string, string>;
const c = `cli${uid()}`;

beforeAll(async () => {
  pool = await requireMysql();
  server = await startServer({
    services: createGiftServer({ pool, tokens: testSigner().verifier(), log: silent }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  env = { GIFT_ADDR: `127.0.0.1:${server.port}` };
  const win = {
    campaignId: c,
    packetId: `${c}p1`,
    userId: 'dora',
    amountCents: 1234n,
    requestId: 'r1',
    wonAtMs: BigInt(Date.now()),
    streamId: '',
    traceId: 'tr1',
  };
  await recordDeadLetter(pool, { ...win, reason: 'CHECK constraint failed', attempts: 5, body: encodeWin(win) });
  // the campaign's escrow holds the win's money, as a funded campaign's does
  await fundEscrows(pool, [win]);
  const garbage = Buffer.from('\xff\xff not a win');
  await recordDeadLetter(pool, { campaignId: c, packetId: `${c}p2`, reason: 'bad', attempts: 1, body: garbage });
});

afterAll(async () => {
  for (const table of ['awards', 'ledger', 'dead_letters']) {
    await pool?.query(`DELETE FROM ${table} WHERE campaign_id = ?`, [c]);
  }
  await server?.shutdown(1000);
  await pool?.end();
});

interface ListJson {
  deadLetters: { deadLetterId: string; packetId: string; userId: string; amountCents: string; redrivenAt?: string }[];
  parkedCount: string;
}

describe('redpacket deadletters', () => {
  it('lists the parked wins, re-drives them once, and keeps the undecodable one parked', async () => {
    const parked = await cliJson<ListJson>(['deadletters', 'list', '--campaign', c], env);
    expect(parked.parkedCount).toBe('2');
    expect(parked.deadLetters.map((d) => [d.packetId, d.userId, d.amountCents])).toEqual([
      [`${c}p1`, 'dora', '1234'],
      [`${c}p2`, '', '0'],
    ]);
    const human = await cli(['deadletters', 'list', '--campaign', c], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('¥12.34');
    expect(human.stdout).toContain(`2 parked: credit them with \`redpacket deadletters redrive --campaign ${c}\``);

    const first = await cli(['--json', 'deadletters', 'redrive', '--campaign', c], env);
    expect(first.code).toBe(1);
    expect(JSON.parse(first.stdout)).toMatchObject({ redriven: '1', credited: '1', failed: '1' });
    expect(first.stderr).toContain('1 dead letter(s) not re-driven');
    const second = await cli(['deadletters', 'redrive', '--campaign', c], env);
    expect(second.code).toBe(1);
    expect(second.stdout).toMatch(/re-driven\s*│\s*0/);
    expect(second.stdout).toMatch(/newly credited\s*│\s*0/);
    expect(second.stdout).toContain('cannot be decoded');
    const [awards] = await pool.query<RowDataPacket[]>(
      'SELECT user_id, amount_cents FROM awards WHERE campaign_id = ?',
      [c],
    );
    expect(awards).toEqual([{ user_id: 'dora', amount_cents: '1234' }]);

    const unknown = await cli(['--json', 'deadletters', 'redrive', '--campaign', c, '--id', '999999999999999'], env);
    expect(unknown.code).toBe(1);
    expect(JSON.parse(unknown.stdout).errors).toEqual([`dead letter 999999999999999: not found in campaign ${c}`]);

    const history = await cliJson<ListJson>(['deadletters', 'list', '--campaign', c, '--all'], env);
    expect(history.parkedCount).toBe('1');
    expect(history.deadLetters.map((d) => [d.packetId, d.redrivenAt !== undefined])).toEqual([
      [`${c}p1`, true],
      [`${c}p2`, false],
    ]);
  });

  it('refuses a malformed campaign id with exit 2, naming the field', async () => {
    const r = await cli(['deadletters', 'list', '--campaign', 'no such id!'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid request: campaign_id');
  });

  it('campaign reconcile shows the dead-lettered packets in a column of their own', () => {
    const rows = reconciliationRows({
      ...Reconciliation.fromPartial({ campaignId: c, packetsTotal: 3, packetsClaimedRedis: 2 }),
      deadLettered: [`${c}p1`],
      packetsDeadLettered: 1,
      amountDeadLetteredCents: 1234n,
    });
    expect(rows).toContainEqual(['parked as dead letters', '1 packets, ¥12.34']);
    expect(rows).toContainEqual(['dead-lettered (redpacket deadletters redrive)', `${c}p1`]);
    expect(rows.some(([k]) => k === 'claimed in Redis, missing in MySQL')).toBe(false);
  });
});
