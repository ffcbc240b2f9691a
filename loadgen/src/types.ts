export interface PreparedRequest {
  /** The gRPC-framed request body. */
  body: Buffer;
  /** Per-request headers (e.g. another user's authorization). */
  headers?: Record<string, string>;
}

export interface WorkerInput {
  target: string;
  path: string;
  requests: PreparedRequest[];
  metadata: Record<string, string>;
  concurrency: number;
  connections: number;
  durationMs: number;
  rps: number;
  replyKey: number;
  keepReplies: boolean;
}

export interface WorkerResult {
  latenciesMs: Float64Array;
  statusCounts: Record<string, number>;
  errors: Record<string, number>;
  replies: Record<string, number>;
  elapsedMs: number;
  /** keepReplies only: the last reply message of each request of this worker's slice. */
  messages?: (Uint8Array | undefined)[];
}
