// A TCP proxy on 127.0.0.1 that forwards to a local server and, when armed, cuts the first connection that has
// moved more than a number of bytes: a broken connection in the middle of a transfer, on demand. The relay and
// the switch are shared with the FTP proxy (ftp-cutting-proxy.ts), which also rewrites passive-mode replies.
import { createServer, connect, Server, Socket } from 'node:net';

export interface CuttingProxy {
  port: number;
  /** Cut once: the next connection that has moved more than `bytes` in `direction` (default to the client) is reset. */
  armCut(bytes: number, direction?: Direction): void;
  cuts(): number;
  /** Bytes relayed in `direction` over every connection so far. */
  moved(direction: Direction): number;
  close(): Promise<void>;
}

/** Which way the counted bytes flow: server to client (a download) or client to server (an upload). */
export type Direction = 'to-client' | 'to-server';

/** One armed cut shared by a proxy's connections: the first to pass its byte count is reset, once. */
export class CutSwitch {
  private armed: { bytes: number; direction: Direction; afterCut?: () => void } | undefined;
  count = 0;
  /** Bytes relayed each way over every connection. */
  readonly moved: Record<Direction, number> = { 'to-client': 0, 'to-server': 0 };

  /** `afterCut` runs right after the cut, before the client can try again (to change the world in between). */
  arm(bytes: number, direction: Direction = 'to-client', afterCut?: () => void): void {
    this.armed = { bytes, direction, afterCut };
  }

  /** True (once per arming) when a connection that has moved `moved` bytes in `direction` must be cut. */
  take(moved: number, direction: Direction): boolean {
    if (!this.armed || this.armed.direction !== direction || moved <= this.armed.bytes) return false;
    const { afterCut } = this.armed;
    this.armed = undefined;
    this.count += 1;
    afterCut?.();
    return true;
  }
}

/**
 * Forwards `client` to 127.0.0.1:`targetPort`, counting bytes each way against `cut`. `fromServer`, when given,
 * takes over writing the server's bytes to the client (the FTP proxy rewrites them); it must keep their order.
 */
export function relay(client: Socket, targetPort: number, sockets: Set<Socket>, cut: CutSwitch | undefined, fromServer?: (chunk: Buffer) => void): Socket {
  const upstream = connect(targetPort, '127.0.0.1');
  sockets.add(client).add(upstream);
  const moved = { 'to-client': 0, 'to-server': 0 };
  // A reset, not a clean close: what a broken network looks like to both ends.
  const reset = () => {
    client.resetAndDestroy();
    upstream.resetAndDestroy();
  };
  const drop = () => {
    client.destroy();
    upstream.destroy();
  };
  // A clean close passes on as a half-close after what is still buffered (destroy would drop the tail).
  client.on('error', drop).on('end', () => upstream.end());
  upstream.on('error', drop).on('end', () => client.end());
  client.on('close', () => upstream.destroyed || upstream.end());
  upstream.on('close', () => client.destroyed || client.end());
  const counted = (direction: Direction, chunk: Buffer): boolean => {
    moved[direction] += chunk.length;
    if (cut) cut.moved[direction] += chunk.length;
    if (!cut?.take(moved[direction], direction)) return true;
    reset();
    return false;
  };
  // With backpressure, so the counts are bytes the far side took, not bytes piled up in the proxy.
  const forward = (to: Socket, from: Socket, chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  };
  client.on('data', (chunk: Buffer) => {
    if (counted('to-server', chunk)) forward(upstream, client, chunk);
  });
  upstream.on('data', (chunk: Buffer) => {
    if (!counted('to-client', chunk)) return;
    if (fromServer) fromServer(chunk);
    else forward(client, upstream, chunk);
  });
  return upstream;
}

export async function listenLocal(onConnection: (socket: Socket) => void): Promise<Server> {
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

export function closeAll(servers: Server[], sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  return Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => undefined);
}

export async function startCuttingProxy(targetPort: number): Promise<CuttingProxy> {
  const cut = new CutSwitch();
  const sockets = new Set<Socket>();
  const server = await listenLocal((client) => void relay(client, targetPort, sockets, cut));
  return {
    port: (server.address() as { port: number }).port,
    armCut: (bytes, direction) => cut.arm(bytes, direction),
    moved: (direction) => cut.moved[direction],
    cuts: () => cut.count,
    close: () => closeAll([server], sockets),
  };
}
