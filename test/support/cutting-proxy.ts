// A TCP proxy on 127.0.0.1 that forwards to a local server and, when armed, cuts the first connection whose
// answer grows past a number of bytes: a broken connection in the middle of a transfer, on demand.
import { createServer, connect, Server, Socket } from 'node:net';

export interface CuttingProxy {
  port: number;
  /** Cut once: the next connection that has sent more than `bytes` to the client is destroyed. */
  armCut(bytes: number): void;
  cuts(): number;
  close(): Promise<void>;
}

export async function startCuttingProxy(targetPort: number): Promise<CuttingProxy> {
  let armed: number | undefined;
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    let sent = 0;
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (armed !== undefined && sent > armed) {
        armed = undefined;
        cuts += 1;
        drop();
        return;
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    armCut: (bytes) => void (armed = bytes),
    cuts: () => cuts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
