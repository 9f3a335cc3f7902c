// A real OpenID Connect provider (the npm package oidc-provider) for the authentication tests, run as a child
// process because the package is an ES module. It listens on 127.0.0.1 with a free port and prints one line,
// {"issuer": "http://127.0.0.1:<port>"}, when ready.
//   POST /token (client_credentials) issues JWT access tokens for resource urn:tesp:jwt and opaque ones for
//   urn:tesp:opaque, both with the audience given as argv[2].
//   Test-only routes (not counted): GET /__count (requests received from anyone but the test itself, which marks
//   its own with x-test-client), GET /__key (the current private signing JWK, so tests can sign odd tokens with
//   the provider's own key), POST /__rotate (a new signing key with a new kid replaces the old one).
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const audience = process.argv[2] ?? 'https://tesp.test';
const clients = JSON.parse(process.argv[3] ?? '[]');

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

let counted = 0;
let signingKey = newSigningKey();
let provider;
let issuer;

function buildProvider() {
  const resource = (format) => ({ scope: 'tes:read tes:write', audience, accessTokenFormat: format, accessTokenTTL: 600 });
  provider = new Provider(issuer, {
    cookies: { keys: [randomUUID()] },
    clients: clients.map((client) => ({ client_id: client.id, client_secret: client.secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] })),
    jwks: { keys: [signingKey] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:tesp:jwt',
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => resource(indicator === 'urn:tesp:opaque' ? 'opaque' : 'jwt'),
      },
    },
    // Groups per client, for the admin and required-group tests.
    extraTokenClaims: (_ctx, token) => ({ groups: clients.find((client) => client.id === token.clientId)?.groups ?? [] }),
  });
}

const server = createServer((req, res) => {
  if (req.url === '/__count') return res.end(JSON.stringify({ count: counted }));
  if (req.url === '/__key') return res.end(JSON.stringify(signingKey));
  if (req.url === '/__rotate' && req.method === 'POST') {
    signingKey = newSigningKey();
    buildProvider();
    return res.end(JSON.stringify({ kid: signingKey.kid }));
  }
  if (!req.headers['x-test-client']) counted += 1;
  provider.callback()(req, res);
});

server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  buildProvider();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
