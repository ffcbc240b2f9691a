/** gRPC's length-prefixed message framing (uncompressed). */

/** Wraps an encoded protobuf message in the 5-byte gRPC frame header. */
export function grpcFrame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Returns the message of the first frame in a response body, or undefined if incomplete. */
export function firstMessage(body: Buffer): Buffer | undefined {
  if (body.length < 5) return undefined;
  const len = body.readUInt32BE(1);
  return body.length >= 5 + len ? body.subarray(5, 5 + len) : undefined;
}
