/** createAccountServer: wires AccountService handlers to MySQL, the Redis mirror and the signer. */
import { Buffer } from 'node:buffer';
import type { sendUnaryData, ServerReadableStream } from '@grpc/grpc-js';
import {
  implement,
  invalidArgument,
  notFound,
  permissionDenied,
  requestIdOf,
  toGrpcError,
  unauthenticated,
  type Logger,
  type RedisClient,
  type Role,
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
import { issueLoginCode, useLoginCode } from './login-codes.js';
import { auditLedger, deposit, withdraw } from './money.js';
import { PasswordChecker } from './passwords.js';
import {
  balanceOf,
  checkReason,
  checkRiskScore,
  checkUserId,
  MAX_PASSWORD_BYTES,
  roleOf,
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
  /**
   * How long a chain of refreshes may extend a session, from the sign-in (`auth_time`): no
   * refreshed token expires later, so a stolen token cannot be kept alive for ever.
   */
  maxSessionSeconds?: number;
  import?: ImportOptions;
  /** Degrade switches (spending.paused); without them Withdraw is never paused. */
  switches?: Switches;
}

/** Defaults: a session lasts at most 7 days; a login code 10 minutes unless asked, 7 days at most. */
export const DEFAULT_MAX_SESSION_SECONDS = 7 * 86_400;
export const DEFAULT_LOGIN_CODE_TTL_SECONDS = 600;
export const MAX_LOGIN_CODE_TTL_SECONDS = 7 * 86_400;

/** A request's ttl_seconds: 0 means `dflt`; otherwise an integer 1..max, or INVALID_ARGUMENT. */
function checkTtl(requested: number, dflt: number, max: number): number {
  const ttl = requested === 0 ? dflt : requested;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > max) {
    throw invalidArgument('ttl_seconds', `must be between 1 and ${max} (0 means ${dflt})`);
  }
  return ttl;
}

export function createAccountServer(deps: AccountServerDeps): ServiceEntry[] {
  const { pool, redis, tokens, log } = deps;
  const store: AccountStore = { pool, redis, passwordCost: deps.passwordCost };
  const passwords = new PasswordChecker(deps.passwordCost);
  const defaultTtl = deps.tokenTtlSeconds ?? 3600;
  const maxTtl = deps.maxTokenTtlSeconds ?? 86_400;
  const maxSession = deps.maxSessionSeconds ?? DEFAULT_MAX_SESSION_SECONDS;

  /** Signs a token for a user row and says when it expires; the one place tokens are made. */
  const tokenFor = async (row: UserRow, role: Role, authTimeMs: number, expiresAtMs: number) => {
    const token = await deps.signer.sign({
      userId: row.user_id,
      role,
      expiresAtMs,
      openedAtMs: row.created_at.getTime(),
      authTimeMs,
    });
    return { token, tokenType: 'Bearer', expiresAt: new Date(Math.floor(expiresAtMs / 1000) * 1000) };
  };

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
        const ttl = checkTtl(req.ttlSeconds, defaultTtl, maxTtl);
        let row: UserRow | undefined;
        let by = userId;
        if (req.loginCode !== '') {
          if (req.password !== '') throw invalidArgument('login_code', 'give a password or a login code, not both');
          // One answer for an unknown user, a wrong, used, expired or another user's code.
          const used = await useLoginCode(pool, userId, req.loginCode, new Date());
          row = used ? await selectUser(pool, userId) : undefined;
          if (!row) throw unauthenticated('invalid user id or login code');
        } else if (req.password === '') {
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
        const role = roleOf(row.role);
        const now = Date.now();
        const res = await tokenFor(row, role, now, now + ttl * 1000);
        log.info({ userId, by, role, ttl, with: req.loginCode !== '' ? 'login code' : 'password' }, 'token issued');
        return res;
      },

      async refreshToken(_req, call) {
        const caller = await tokens.fromMetadata(call.metadata);
        if (caller.authTimeMs === undefined) {
          throw unauthenticated('this token cannot be refreshed (no auth_time): get one from IssueToken');
        }
        const now = Date.now();
        const sessionEndMs = (Math.floor(caller.authTimeMs / 1000) + maxSession) * 1000;
        if (sessionEndMs - now < 1000) throw unauthenticated('session too old: sign in again');
        const row = await selectUser(pool, caller.userId);
        if (!row) throw unauthenticated('invalid token (no such account)');
        if (row.blocked !== 0) throw permissionDenied('account blocked');
        // A role taken away since the sign-in is not carried forward.
        const role = caller.role === roleOf(row.role) ? caller.role : 'user';
        const res = await tokenFor(row, role, caller.authTimeMs, Math.min(now + defaultTtl * 1000, sessionEndMs));
        log.info({ userId: row.user_id, role, expiresAt: res.expiresAt.toISOString() }, 'token refreshed');
        return res;
      },

      async issueLoginCode(req, call) {
        const admin = await tokens.admin(call.metadata);
        const userId = checkUserId(req.userId);
        const ttl = checkTtl(req.ttlSeconds, DEFAULT_LOGIN_CODE_TTL_SECONDS, MAX_LOGIN_CODE_TTL_SECONDS);
        if (!(await selectUser(pool, userId))) throw notFound(`user ${userId}`);
        const expiresAt = new Date(Date.now() + ttl * 1000);
        const code = await issueLoginCode(pool, userId, expiresAt, admin.userId);
        // Never the code itself: logs are read by more people than should sign in as this user.
        log.info({ userId, by: admin.userId, ttl }, 'login code issued');
        return { code, expiresAt };
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
