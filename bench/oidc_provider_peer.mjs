// A minimal oidc-provider issuer for bench/peer_oidc_provider.py: the
// client_credentials grant for one static client (client_secret_post), with
// ES256 JWT access tokens (typ at+jwt) for one resource server, on loopback.
//
//   node oidc_provider_peer.mjs PORT CLIENT_SECRET RESOURCE TTL_SECONDS
//
// Run from a directory whose node_modules holds oidc-provider. It prints one
// line "listening <issuer>" when it accepts connections.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const [port, clientSecret, resource, ttl] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

// A fresh P-256 key per run, as our control plane generates its own.
const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
  format: 'jwk',
});

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'bench',
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'read',
      // Only an ES256 key is configured; the RS256 default would be unsignable.
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [{ ...signing, kid: 'bench-es256', alg: 'ES256', use: 'sig' }] },
  scopes: ['read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'read',
          audience: resource,
          accessTokenTTL: Number(ttl),
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256', kid: 'bench-es256' } },
        };
      },
    },
  },
});

createServer(provider.callback()).listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
