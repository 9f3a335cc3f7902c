import { isLoopback } from './setup-http-app';

describe('isLoopback', () => {
  it('tells loopback listen addresses from the others', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) expect([host, isLoopback(host)]).toEqual([host, true]);
    for (const host of ['0.0.0.0', '::', 'tesp.example.org', '127.0.0.1.example.org']) expect([host, isLoopback(host)]).toEqual([host, false]);
  });
});
