/** The mesh's wire types and gRPC stubs, all generated from src/redpacket/v1/*.proto. */
import { fileURLToPath } from 'node:url';

export * from './gen/redpacket/v1/campaign.js';
export * from './gen/redpacket/v1/grab.js';
export * from './gen/redpacket/v1/admin.js';
export * from './gen/redpacket/v1/account.js';
export * from './gen/redpacket/v1/gift.js';
export * from './gen/redpacket/v1/pipeline.js';

/** Path of the descriptor set (with imports) that Envoy's grpc_json_transcoder loads. */
export const descriptorSetPath = fileURLToPath(new URL('../descriptors/redpacket.pb', import.meta.url));
