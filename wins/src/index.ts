/** The win pipeline's shared parts: the RabbitMQ topology, the WinEvent codec, the AMQP connection. */
export { WinEvent } from '@redpacket/proto';
export * from './amqp.js';
export * from './codec.js';
export * from './migrate.js';
export * from './topology.js';
