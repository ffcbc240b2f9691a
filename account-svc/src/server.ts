/** createAccountServer: wires AccountService handlers to MySQL, the Redis mirror and the signer. */
import { Buffer } from 'node:buffer';
import type { sendUnaryData, ServerReadableStream } from '@grpc/grpc-js';
import {
  implement,
  invalidArgument,
  notFound,
  requestIdOf,
  toGrpcError,
  unauthenticated,
  type Logger,
  type RedisClient,
  type ServiceEntry,
  type Switches,
  type TokenSigner,
  type TokenVerifier,
} from '@redpacket/lib';
import {
  AccountServiceService,
  type AccountServiceServer,
  type ImportUsersRequest,
  type ImportUsersResponse,
} from '@redpacket/proto';
import type { Pool } from '@redpacket/db';
import { blockUser, registerUser, setRiskScore, unblockUser, type AccountStore } from './accounts.js';
import { UserImporter, type ImportOptions } from './import-users.js';
import { auditLedger, deposit, withdraw } from './money.js';
import { PasswordChecker } from './passwords.js';
import {
  balanceOf,
  checkReason,
  checkRiskScore,
  checkUserId,
  MAX_PASSWORD_BYTES,
  selectUser,
  toAccount,
  validateUser,
  type UserRow,
} from './users.js';

export interface AccountServerDeps {
  pool: Pool;
  redis: RedisClient;
  tokens: TokenVerifier;
  log: Logger;
  /** The private key of JWT_PRIVATE_KEY_FILE: signs the tokens IssueToken hands out. */
  signer: TokenSigner;
  /** bcrypt cost factor for new hashes (10 in production; tests use 4). */
  passwordCost: number;
  /** Token lifetime when the request asks for none, and the longest it may ask for. */
  tokenTtlSeconds?: number;
  maxTokenTtlSeconds?: number;
  import?: ImportOptions;
  /** Degrade switches (spending.paused); without them Withdraw is never paused. */
  switches?: Switches;
}

export function createAccountServer(deps: AccountServerDeps): ServiceEntry[] {
  const { pool, redis, tokens, log } = deps;
  const store: AccountStore = { pool, redis, passwordCost: deps.passwordCost };
  const passwords = new PasswordChecker(deps.passwordCost);
  const defaultTtl = deps.tokenTtlSeconds ?? 3600;
  const maxTtl = deps.maxTokenTtlSeconds ?? 86_400;

  const account = async (row: UserRow) => toAccount(row, await balanceOf(pool, row.user_id));

  const importUsers = (
    call: ServerReadableStream<ImportUsersRequest, ImportUsersResponse>,
    callback: sendUnaryData<ImportUsersResponse>,
  ): void => {
    const run = async (): Promise<ImportUsersResponse> => {
      const admin = await tokens.admin(call.metadata);
      const started = Date.now();
      const importer = new UserImporter(store, deps.import);
      for await (const msg of call as AsyncIterable<ImportUsersRequest>) await importer.add(msg.users);
      const res = await importer.finish();
      log.info(
        {
          by: admin.userId,
          received: Number(res.received),
          created: Number(res.created),
          duplicates: Number(res.duplicates),
          rejected: Number(res.rejected),
          ms: Date.now() - started,
        },
        'users imported',
      );
      return res;
    };
    run().then(
      (res) => callback(null, res),
      (err: unknown) => callback(toGrpcError(err, log, '/redpacket.v1.AccountService/ImportUsers', requestIdOf(call))),
    );
  };

  const service = implement<AccountServiceServer>(
    AccountServiceService,
    {
      async registerUser(req, call) {
        const admin = await tokens.admin(call.metadata);
        const row = await registerUser(store, validateUser(req.user));
        log.info({ userId: row.user_id, by: admin.userId, role: row.role }, 'user registered');
        return account(row);
      },

      importUsers,

      async issueToken(req, call) {
        const userId = checkUserId(req.userId);
        const ttl = req.ttlSeconds === 0 ? defaultTtl : req.ttlSeconds;
        if (!Number.isInteger(ttl) || ttl < 1 || ttl > maxTtl) {
          throw invalidArgument('ttl_seconds', `must be between 1 and ${maxTtl} (0 means ${defaultTtl})`);
        }
        let row: UserRow | undefined;
        let by = userId;
        if (req.password === '') {
          // No secret: only an admin may issue, e.g. for a device-less pre-opened account.
          if (call.metadata.get('authorization').length === 0) throw unauthenticated('password is required');
          by = (await tokens.admin(call.metadata)).userId;
          row = await selectUser(pool, userId);
          if (!row) throw notFound(`user ${userId}`);
        } else {
          // No stored secret is longer (bcrypt reads 72 bytes); refusing early bounds the work.
          if (Buffer.byteLength(req.password, 'utf8') > MAX_PASSWORD_BYTES) {
            throw unauthenticated('invalid user id or password');
          }
          row = await selectUser(pool, userId);
          // One answer for an unknown user and a wrong password: ids are not to be probed.
          if (!(await passwords.check(req.password, row?.password_hash)) || !row) {
            throw unauthenticated('invalid user id or password');
          }
        }
        const role = row.role === 'admin' ? 'admin' : 'user';
        const token = await deps.signer.sign({
          userId,
          role,
          ttlSeconds: ttl,
          openedAtMs: row.created_at.getTime(),
        });
        log.info({ userId, by, role, ttl }, 'token issued');
        return { token, tokenType: 'Bearer', expiresAt: new Date(Date.now() + ttl * 1000) };
      },

      async getAccount(req, call) {
        const caller = await tokens.fromMetadata(call.metadata);
        const userId = req.userId === '' ? caller.userId : checkUserId(req.userId);
        if (userId !== caller.userId) await tokens.admin(call.metadata);
        const row = await selectUser(pool, userId);
        if (!row) throw notFound(`user ${userId}`);
        return account(row);
      },

      async blockUser(req, call) {
        const admin = await tokens.admin(call.metadata);
        const userId = checkUserId(req.userId);
        const reason = checkReason(req.reason);
        if (reason === '') throw invalidArgument('reason', 'is required: say why');
        const row = await blockUser(store, userId, reason, admin.userId);
        log.info({ userId, by: admin.userId, reason }, 'user blocked');
        return account(row);
      },

      async unblockUser(req, call) {
        const admin = await tokens.admin(call.metadata);
        const row = await unblockUser(store, checkUserId(req.userId), admin.userId);
        log.info({ userId: row.user_id, by: admin.userId }, 'user unblocked');
        return account(row);
      },

      async setRiskScore(req, call) {
        const admin = await tokens.admin(call.metadata);
        const row = await setRiskScore(store, checkUserId(req.userId), checkRiskScore(req.riskScore));
        log.info({ userId: row.user_id, by: admin.userId, riskScore: row.risk_score }, 'risk score set');
        return account(row);
      },

      async deposit(req, call) {
        const admin = await tokens.admin(call.metadata);
        const res = await deposit(pool, req);
        log.info(
          {
            accountId: res.accountId,
            by: admin.userId,
            amountCents: Number(req.amountCents),
            requestId: req.requestId,
          },
          'deposit',
        );
        return res;
      },

      async withdraw(req, call) {
        const caller = await tokens.fromMetadata(call.metadata);
        const res = await withdraw(pool, deps.switches, caller.userId, req);
        log.info(
          { userId: caller.userId, amountCents: Number(req.amountCents), requestId: req.requestId },
          'withdrawal',
        );
        return res;
      },

      async auditLedger(_req, call) {
        const admin = await tokens.admin(call.metadata);
        const res = await auditLedger(pool);
        if (res.consistent) log.info({ by: admin.userId }, 'ledger audit consistent');
        else log.error({ by: admin.userId, problems: res.problems.slice(0, 20) }, 'ledger audit found problems');
        return res;
      },
    },
    log,
  );

  return [{ name: 'redpacket.v1.AccountService', definition: AccountServiceService, implementation: service }];
}
