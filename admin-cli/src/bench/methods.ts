/** Finds a gRPC method by name in the mesh's descriptor set, with its generated message type. */
import { readFileSync } from 'node:fs';
import { loadFileDescriptorSetFromBuffer, type MethodDefinition } from '@grpc/proto-loader';
import { ECHO_PATH } from '@redpacket/loadgen';
import * as proto from '@redpacket/proto';
import { usageError } from '../errors.js';

/** The generated (ts-proto) functions of one message type that bench needs. */
interface MessageFns {
  fromJSON(object: unknown): unknown;
  fromPartial(object: object): object;
  encode(message: unknown): { finish(): Uint8Array };
}

export interface BenchMethod {
  /** e.g. "redpacket.v1.GrabService.Grab" */
  fullName: string;
  service: string;
  method: string;
  /** e.g. "/redpacket.v1.GrabService/Grab" */
  path: string;
  inputName: string;
  outputName: string;
  /** Encodes the JSON call data (snake_case or camelCase field names) as the request message. */
  encode(data: unknown): Uint8Array;
}

const snakeToCamel = (k: string): string => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const camelToSnake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The echo server of @redpacket/loadgen: sends the rendered call data as raw bytes. */
const ECHO: BenchMethod = {
  fullName: 'bench.Echo.Echo',
  service: 'bench.Echo',
  method: 'Echo',
  path: ECHO_PATH,
  inputName: 'bytes',
  outputName: 'bytes',
  encode: (data) => new TextEncoder().encode(typeof data === 'string' ? data : JSON.stringify(data)),
};

function messageEncoder(typeName: string): (data: unknown) => Uint8Array {
  const fns = (proto as unknown as Record<string, MessageFns | undefined>)[typeName];
  if (!fns?.fromJSON) throw new Error(`no generated type ${typeName} in @redpacket/proto`);
  const fields = Object.keys(fns.fromPartial({}));
  return (data) => {
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw usageError(`call data for ${typeName} must be a JSON object`);
    }
    // proto3 JSON names or original names; an unknown one would otherwise vanish silently
    for (const k of Object.keys(data)) {
      if (!fields.includes(snakeToCamel(k))) {
        throw usageError(`${typeName} has no field "${k}" (fields: ${fields.map(camelToSnake).join(', ')})`);
      }
    }
    return fns.encode(fns.fromJSON(data)).finish();
  };
}

let methods: Map<string, BenchMethod> | undefined;

/** Every unary method of the mesh, by "pkg.Service.Method" (and "pkg.Service/Method"). */
export function allMethods(): Map<string, BenchMethod> {
  if (methods) return methods;
  methods = new Map([[ECHO.fullName, ECHO]]);
  const pkg = loadFileDescriptorSetFromBuffer(readFileSync(proto.descriptorSetPath));
  for (const [service, def] of Object.entries(pkg)) {
    if ('format' in def) continue; // a message or enum type
    for (const [method, m] of Object.entries(def as Record<string, MethodDefinition<unknown, unknown>>)) {
      if (m.requestStream || m.responseStream) continue;
      const inputName = (m.requestType.type as { name: string }).name;
      const outputName = (m.responseType.type as { name: string }).name;
      methods.set(`${service}.${method}`, {
        fullName: `${service}.${method}`,
        service,
        method,
        path: m.path,
        inputName,
        outputName,
        encode: messageEncoder(inputName),
      });
    }
  }
  return methods;
}

export function findMethod(call: string): BenchMethod {
  const name = call.replace(/\/(?=[^/]*$)/, '.');
  const m = allMethods().get(name);
  if (!m) throw usageError(`--call ${call}: no such unary method; known: ${[...allMethods().keys()].join(', ')}`);
  return m;
}
