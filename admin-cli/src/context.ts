/** What every command needs: addresses, the admin token, typed clients and the output mode. */
import { Metadata, type CallOptions, type Client, type ServiceError } from '@grpc/grpc-js';
import { channelCredentials, readPrivateKeyFile, readTlsFiles, TokenSigner, type TlsMaterial } from '@redpacket/lib';
import { createRedPacketClient, type RedPacketClient } from '@redpacket/client';
import { AccountServiceClient, AdminServiceClient, GiftServiceClient, GrabServiceClient } from '@redpacket/proto';
import { fromGrpc, usageError } from './errors.js';

/** The environment the CLI reads (only main.ts touches process.env). */
export interface CliEnv {
  GRAB_ADDR?: string;
  ACCOUNT_ADDR?: string;
  GIFT_ADDR?: string;
  REDPACKET_TOKEN?: string;
  /** The operator's signing key (account-svc's JWT_PRIVATE_KEY_FILE): signs admin and test tokens. */
  JWT_PRIVATE_KEY_FILE?: string;
  JWT_ISSUER?: string;
  JWT_AUDIENCE?: string;
  REDIS_URL?: string;
  /** grab-svc's policy for the demo's services when REDIS_URL names a Redis of your own. */
  REDIS_DURABILITY?: string;
  MYSQL_URL?: string;
  AMQP_URL?: string;
  DEMO_PACKETS?: string;
  DEMO_USERS?: string;
  DEMO_TOTAL_YUAN?: string;
  /** mTLS to the services (the services' own variables): all three or none. */
  GRPC_TLS_CERT_FILE?: string;
  GRPC_TLS_KEY_FILE?: string;
  GRPC_TLS_CA_FILE?: string;
}

/** The options every command accepts (defined once on the root program). */
export interface GlobalOptions {
  grabAddr: string;
  accountAddr: string;
  giftAddr: string;
  token?: string;
  /** PEM file of the EC P-256 key tokens are signed with when no token is given. */
  privateKey?: string;
  issuer?: string;
  audience?: string;
  json: boolean;
  timeout: number;
  /** mTLS: this client's certificate, its key and the mesh's CA (PEM files); all three or none. */
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** The TLS flags, by option name, as a refusal names them. */
const TLS_FLAGS = { tlsCert: '--tls-cert', tlsKey: '--tls-key', tlsCa: '--tls-ca' } as const;
const TLS_ENV = { tlsCert: 'GRPC_TLS_CERT_FILE', tlsKey: 'GRPC_TLS_KEY_FILE', tlsCa: 'GRPC_TLS_CA_FILE' } as const;

/**
 * The TLS material the options name, read once; undefined = plaintext. A partial set is a usage
 * error naming the missing flag: two of three means TLS was meant.
 */
function tlsOf(opts: GlobalOptions): TlsMaterial | undefined {
  const keys = Object.keys(TLS_FLAGS) as (keyof typeof TLS_FLAGS)[];
  const missing = keys.filter((k) => !opts[k]);
  if (missing.length === keys.length) return undefined;
  if (missing.length > 0) {
    const names = missing.map((k) => `${TLS_FLAGS[k]} (env ${TLS_ENV[k]})`).join(', ');
    throw usageError(`mTLS needs a certificate, its key and the CA: missing ${names}`);
  }
  try {
    return readTlsFiles({ certFile: opts.tlsCert!, keyFile: opts.tlsKey!, caFile: opts.tlsCa! });
  } catch (err) {
    throw usageError((err as Error).message);
  }
}

/** The last overload of a generated grpc-js unary client method. */
export type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  options: Partial<CallOptions>,
  cb: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** One service's client with its address, for calls that turn errors into CliErrors. */
export class ServiceHandle<C extends Client> {
  constructor(
    readonly name: string,
    readonly address: string,
    readonly client: C,
    private readonly metadata: () => Promise<Metadata>,
    private readonly timeoutMs: number,
  ) {}

  /** One unary call with the admin token; `timeoutMs` shortens the default deadline. */
  async call<Req, Res>(method: UnaryMethod<Req, Res>, req: Req, timeoutMs = this.timeoutMs): Promise<Res> {
    const md = await this.metadata();
    return new Promise((resolve, reject) => {
      method.call(this.client, req, md, { deadline: Date.now() + Math.min(timeoutMs, this.timeoutMs) }, (err, res) =>
        err ? reject(fromGrpc(err, this.name, this.address)) : resolve(res),
      );
    });
  }

  /** The same client calling with `token` instead of the admin token: a user's own calls. */
  as(token: string): ServiceHandle<C> {
    const md = new Metadata();
    md.set('authorization', `Bearer ${token}`);
    return new ServiceHandle(this.name, this.address, this.client, () => Promise.resolve(md), this.timeoutMs);
  }
}

/** The services a command reaches, by the name of their address option. */
export type ServiceKey = 'grab' | 'account' | 'gift';

const SERVICE_NAME: Record<ServiceKey, string> = { grab: 'grab-svc', account: 'account-svc', gift: 'gift-svc' };

export class CliContext {
  private adminTok: Promise<string> | undefined;
  private adminMd: Promise<Metadata> | undefined;
  private tokenSigner: TokenSigner | undefined;
  private readonly open: Client[] = [];
  private rpClient: RedPacketClient | undefined;
  private tlsRead: { material: TlsMaterial | undefined } | undefined;

  constructor(readonly opts: GlobalOptions) {}

  /** The mTLS material of --tls-cert/--tls-key/--tls-ca (or GRPC_TLS_*); undefined = plaintext. */
  get tls(): TlsMaterial | undefined {
    this.tlsRead ??= { material: tlsOf(this.opts) };
    return this.tlsRead.material;
  }

  get json(): boolean {
    return this.opts.json;
  }

  /** Signs with --private-key (JWT_PRIVATE_KEY_FILE); a usage error without one. */
  get signer(): TokenSigner {
    if (!this.opts.privateKey)
      throw usageError('no signing key: give --private-key or JWT_PRIVATE_KEY_FILE (or a token: --token)');
    this.tokenSigner ??= new TokenSigner({
      privateKeyPem: readPrivateKeyFile(this.opts.privateKey),
      issuer: this.opts.issuer,
      audience: this.opts.audience,
    });
    return this.tokenSigner;
  }

  /** The admin token: REDPACKET_TOKEN/--token, else signed with the private key. */
  adminToken(): Promise<string> {
    this.adminTok ??= this.opts.token
      ? Promise.resolve(this.opts.token)
      : this.signer.sign({ userId: 'redpacket-cli', role: 'admin', ttlSeconds: 3600 });
    return this.adminTok;
  }

  /** `authorization: Bearer <admin token>`. */
  adminMetadata(): Promise<Metadata> {
    this.adminMd ??= this.adminToken().then((token) => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${token}`);
      return md;
    });
    return this.adminMd;
  }

  /**
   * One call through @redpacket/client (every service, the admin token, --timeout as deadline);
   * a failure becomes the same CliError as a ServiceHandle call's.
   */
  async via<T>(service: ServiceKey, f: (client: RedPacketClient) => Promise<T>): Promise<T> {
    this.rpClient ??= createRedPacketClient({
      address: this.opts.grabAddr,
      addresses: { account: this.opts.accountAddr, gift: this.opts.giftAddr },
      tokenProvider: () => this.adminToken(),
      tls: this.tls,
      deadlineMs: this.opts.timeout,
    });
    try {
      return await f(this.rpClient);
    } catch (err) {
      throw fromGrpc(err, SERVICE_NAME[service], this.opts[`${service}Addr`]);
    }
  }

  private handle<C extends Client>(name: string, address: string, make: (addr: string) => C): ServiceHandle<C> {
    const client = make(address);
    this.open.push(client);
    return new ServiceHandle(name, address, client, () => this.adminMetadata(), this.opts.timeout);
  }

  admin(): ServiceHandle<AdminServiceClient> {
    return this.handle('grab-svc', this.opts.grabAddr, (a) => new AdminServiceClient(a, channelCredentials(this.tls)));
  }

  grab(): ServiceHandle<GrabServiceClient> {
    return this.handle('grab-svc', this.opts.grabAddr, (a) => new GrabServiceClient(a, channelCredentials(this.tls)));
  }

  account(): ServiceHandle<AccountServiceClient> {
    return this.handle(
      'account-svc',
      this.opts.accountAddr,
      (a) => new AccountServiceClient(a, channelCredentials(this.tls)),
    );
  }

  gift(): ServiceHandle<GiftServiceClient> {
    return this.handle('gift-svc', this.opts.giftAddr, (a) => new GiftServiceClient(a, channelCredentials(this.tls)));
  }

  /** Writes the result: JSON (one document) with --json, the human form otherwise. */
  print(json: unknown, human: () => string): void {
    process.stdout.write(this.json ? `${JSON.stringify(json, null, 2)}\n` : `${human()}\n`);
  }

  close(): void {
    for (const c of this.open.splice(0)) c.close();
    this.rpClient?.close();
    this.rpClient = undefined;
  }
}
