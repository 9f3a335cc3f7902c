import { loadSettings } from '../config/settings.loader';
import { connectionOptions } from './http-server-guards';

describe('connectionOptions', () => {
  const server = (overrides: Record<string, unknown>) => loadSettings({ env: {}, overrides }).server;

  it('applies the timeouts from settings, checking them often enough for a short header timeout', () => {
    expect(connectionOptions(server({ 'server.headers_timeout_ms': 1000 }))).toEqual({
      keepAliveTimeout: 10_000,
      requestTimeout: 600_000,
      http: { headersTimeout: 1000, maxHeaderSize: 16_384, connectionsCheckingInterval: 500 },
    });
    expect(connectionOptions(server({})).http.connectionsCheckingInterval).toBe(1000);
  });

  it('never sets a header timeout beyond the request timeout (Node refuses one)', () => {
    expect(connectionOptions(server({ 'server.headers_timeout_ms': 60_000, 'server.request_timeout_ms': 5000 })).http.headersTimeout).toBe(5000);
  });
});
