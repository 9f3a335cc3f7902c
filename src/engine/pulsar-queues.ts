// Pulsar's message-queue names (pulsar-protocol reference §12.1): the contract between the API's pulsar backend
// and `tesp runner`. Exchange `pulsar` (direct, durable); queue name = routing key = <prefix>_<name>, prefix
// `pulsar_` for the default manager and `pulsar_<manager>_` for another.

export const PULSAR_EXCHANGE = 'pulsar';

export interface PulsarQueues {
  setup: string;
  kill: string;
  status: string;
  statusUpdate: string;
  statusUpdateAck: string;
  /** A tesp extension: only `tesp runner` binds it; for a real Pulsar the broker drops what is sent there. */
  clean: string;
}

export function pulsarQueues(manager: string): PulsarQueues {
  const prefix = manager === '_default_' ? 'pulsar_' : `pulsar_${manager}_`;
  return {
    setup: `${prefix}_setup`,
    kill: `${prefix}_kill`,
    status: `${prefix}_status`,
    statusUpdate: `${prefix}_status_update`,
    statusUpdateAck: `${prefix}_status_update_ack`,
    clean: `${prefix}_tesp_clean`,
  };
}

/** The routing key of an acknowledgement a status update asks for (`acknowledge_queue`, e.g. "status_update_ack"). */
export function ackRoutingKey(manager: string, acknowledgeQueue: string): string {
  return `${manager === '_default_' ? 'pulsar_' : `pulsar_${manager}_`}_${acknowledgeQueue}`;
}
