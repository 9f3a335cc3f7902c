// An FTP proxy on 127.0.0.1 in front of a local FTP server that can cut a data connection in the middle of a
// transfer. The control connection is relayed line by line; passive-mode replies (227 PASV, 229 EPSV) are
// rewritten to a data listener of the proxy, so data connections pass through it too and can be cut.
import type { Server, Socket } from 'node:net';
import { closeAll, CutSwitch, Direction, listenLocal, relay } from './cutting-proxy';

export interface FtpCuttingProxy {
  port: number;
  /** Cut once: the next data connection that has moved more than `bytes` in `direction` is reset. */
  armCut(bytes: number, direction: Direction, afterCut?: () => void): void;
  cuts(): number;
  /** Data bytes relayed in a direction, over all data connections. */
  moved(direction: Direction): number;
  /** Control commands the client sent (PASS hidden), in order. */
  commands(): string[];
  close(): Promise<void>;
}

const PASV = /^227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/;
const EPSV = /^229 .*\(\|\|\|(\d+)\|\)/;

export async function startFtpCuttingProxy(targetPort: number): Promise<FtpCuttingProxy> {
  const cut = new CutSwitch();
  const sockets = new Set<Socket>();
  const servers: Server[] = [];

  /** A one-connection listener that relays to the server's data port, cuttable. */
  const dataListener = async (serverPort: number): Promise<number> => {
    const listener = await listenLocal((client) => {
      listener.close();
      relay(client, serverPort, sockets, cut);
    });
    servers.push(listener);
    return (listener.address() as { port: number }).port;
  };

  const rewrite = async (line: string): Promise<string> => {
    const pasv = PASV.exec(line);
    if (pasv) {
      const port = await dataListener(Number(pasv[5]) * 256 + Number(pasv[6]));
      return `227 Entering Passive Mode (127,0,0,1,${port >> 8},${port & 255}).`;
    }
    const epsv = EPSV.exec(line);
    if (epsv) return `229 Entering Extended Passive Mode (|||${await dataListener(Number(epsv[1]))}|)`;
    return line;
  };

  const commands: string[] = [];
  const control = await listenLocal((client) => {
    let sent = '';
    client.on('data', (chunk: Buffer) => {
      const lines = (sent + chunk.toString('latin1')).split('\r\n');
      sent = lines.pop() ?? '';
      commands.push(...lines.map((line) => (/^PASS /i.test(line) ? 'PASS ***' : line)));
    });
    let pending = '';
    // Replies are rewritten in order: a chain of writes, each waiting for its data listener if it needs one.
    let chain = Promise.resolve();
    relay(client, targetPort, sockets, undefined, (chunk) => {
      pending += chunk.toString('latin1');
      const lines = pending.split('\r\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        chain = chain
          .then(async () => void client.write(`${await rewrite(line)}\r\n`, 'latin1'))
          .catch(() => void client.destroy());
      }
    });
  });
  servers.push(control);

  return {
    port: (control.address() as { port: number }).port,
    armCut: (bytes, direction, afterCut) => cut.arm(bytes, direction, afterCut),
    cuts: () => cut.count,
    moved: (direction) => cut.moved[direction],
    commands: () => [...commands],
    close: () => closeAll(servers, sockets),
  };
}
