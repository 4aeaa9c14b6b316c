// A strict OpenID Connect relying party for Threshold's single sign-on tests.
//
// No Threshold code is in it: the protocol is openid-client 6 (a certified relying party, on
// oauth4webapi), logout tokens are verified with jose. It is a tiny node:http app on 127.0.0.1
// that the browser tests start (tests/browser/sso_rp.py); it prints "listening PORT" when ready.
//
// Routes the browser uses, for an app registered under NAME:
//   GET /login/NAME?...        starts a code flow: discovery, PKCE S256, state, nonce; extra query
//                              parameters (prompt, max_age, acr_values, scope, ...) are forwarded;
//                              `rp_*` parameters bend the request for the negative tests.
//   GET /cb/NAME               the redirect_uri: checks the response (iss, state), exchanges the
//                              code (code_verifier), verifies the ID token (signature against the
//                              JWKS, iss, aud, nonce, exp/iat, auth_time against max_age with zero
//                              clock tolerance), calls userinfo; shows and records the outcome.
//   POST /cb/NAME              the same for a response_mode=form_post response (the parameters in
//                              a form body, read by openid-client from the Request).
//   GET /logout/NAME           RP-initiated logout with id_token_hint, post_logout_redirect_uri, state;
//                              with rp_method=post, a page whose form POSTs them (cross-site).
//   GET /logged-out/NAME       the post_logout_redirect_uri.
//   POST /backchannel/NAME     the backchannel_logout_uri: verifies and records the logout_token.
// Routes the Python test uses (JSON in, JSON out):
//   POST /clock                {skew}: the provider's clock minus ours, in seconds.
//   POST /clients              {name, issuer, client_id, client_secret, id_token_alg}: discovery.
//   GET  /clients/NAME         everything recorded for the app.
//   POST /clients/NAME/refresh {refresh_token}
//   POST /clients/NAME/replay  {index}: redeem the code of flow INDEX again.
//   POST /clients/NAME/userinfo {access_token, sub}
//   POST /clients/NAME/verify  {id_token}: verify an ID token against the JWKS fetched now.
//   POST /clients/NAME/secret  {client_secret}: use another client secret from now on.
//   POST /clients/NAME/introspect {token}: token introspection (RFC 7662) as this app.
// An app authenticates with client_secret_basic, or client_secret_post when registered with
// {auth: "post"}; a public app (no secret) with none.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import * as client from 'openid-client';
import * as jose from 'jose';

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const apps = new Map();
const transactions = new Map();
let origin = '';
// The provider's clock minus ours, in seconds: the tests move Threshold's clock forward, and a
// relying party whose clock agrees with its provider's (as NTP would make it) checks exp and
// auth_time against the provider's time.
let clockSkew = 0;

function json(response, status, body) {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}

function page(response, status, title, body) {
  response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  const text = JSON.stringify(body, null, 2).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  response.end(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>` +
      `<body><h1>${title}</h1><pre id="result">${text}</pre></body></html>`,
  );
}

async function readBody(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// What went wrong, in the words of the OAuth error (when the provider sent one) and the library.
function failure(error) {
  // A 401 with WWW-Authenticate (RFC 6750 §3, RFC 6749 §5.2): the error is in the challenge.
  const challenges = Array.isArray(error.cause) ? error.cause : [];
  return {
    ok: false,
    error: error.error ?? challenges[0]?.parameters?.error ?? null,
    challenges: challenges.map((challenge) => ({
      scheme: challenge.scheme,
      parameters: challenge.parameters,
    })),
    error_description: error.error_description ?? null,
    status: error.status ?? null,
    code: error.code ?? null,
    name: error.name ?? null,
    message: String(error.message ?? error),
    // The library's reason, when the error wraps one ("JWT signature verification failed").
    cause: error.cause instanceof Error ? failure(error.cause) : null,
  };
}

function decode(idToken) {
  return { header: jose.decodeProtectedHeader(idToken), payload: jose.decodeJwt(idToken) };
}

// A fresh Configuration (discovery, and so a fresh JWKS cache) per transaction, as a stateless
// app behind a load balancer would have: a rotated key is found without waiting for a cache.
async function configure(app, { forgeJwks = false } = {}) {
  const metadata = {
    [client.clockTolerance]: 0,
    [client.clockSkew]: clockSkew,
    ...(app.id_token_alg ? { id_token_signed_response_alg: app.id_token_alg } : {}),
  };
  const secretAuth = app.auth === 'post' ? client.ClientSecretPost : client.ClientSecretBasic;
  const auth = app.client_secret ? secretAuth(app.client_secret) : client.None();
  return client.discovery(new URL(app.issuer), app.client_id, metadata, auth, {
    // Loopback http in the tests; and verify every ID token's (and JWT response's) signature
    // against the JWKS: by default the library trusts the TLS connection to the token endpoint
    // instead (OpenID Connect Core §3.1.3.7), which would leave the provider's signing untested.
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
    ...(forgeJwks ? { [client.customFetch]: forgingJwks } : {}),
  });
}

// For the test that shows this relying party checks signatures: the JWKS as an attacker who
// controls it would serve it, each key replaced by a new one under the same kid.
async function forgingJwks(url, options) {
  const response = await fetch(url, options);
  if (!new URL(url).pathname.includes('jwks')) return response;
  const { keys } = await response.json();
  const forged = [];
  for (const key of keys) {
    const alg = key.alg ?? (key.kty === 'EC' ? 'ES256' : 'RS256');
    const { publicKey } = await jose.generateKeyPair(alg, { extractable: true });
    forged.push({ ...(await jose.exportJWK(publicKey)), kid: key.kid, alg, use: 'sig' });
  }
  return new Response(JSON.stringify({ keys: forged }), {
    status: 200,
    headers: { 'content-type': 'application/json' },
  });
}

function tokenResult(tokens) {
  const result = {
    ok: true,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token ?? null,
    token_type: tokens.token_type,
    expires_in: tokens.expires_in ?? null,
    scope: tokens.scope ?? null,
    id_token: tokens.id_token ?? null,
    claims: tokens.claims() ?? null,
  };
  if (tokens.id_token) result.id_token_header = decode(tokens.id_token).header;
  return result;
}

async function startLogin(app, url, response) {
  const params = new URLSearchParams(url.searchParams);
  const bend = (name) => {
    const value = params.get(name);
    params.delete(name);
    return value;
  };
  const pkce = bend('rp_pkce') ?? 'S256'; // S256 | plain | none
  const withNonce = bend('rp_nonce') !== 'omit';
  const redirectUri = bend('rp_redirect_uri') ?? `${origin}/cb/${app.name}`;
  const wrongVerifier = bend('rp_wrong_verifier') === '1';
  // Third-party initiated login (OpenID Connect Core §4): a sign-in started from the provider's
  // "My apps" names the issuer, which must be this app's; target_link_uri is the app's own.
  const initiatedBy = bend('iss');
  bend('target_link_uri');
  if (initiatedBy !== null && new URL(initiatedBy).href !== new URL(app.issuer).href) {
    return json(response, 400, { ok: false, message: `unknown issuer ${initiatedBy}` });
  }
  const config = await configure(app, { forgeJwks: bend('rp_forge_jwks') === '1' });

  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = withNonce ? client.randomNonce() : undefined;
  const parameters = {
    redirect_uri: redirectUri,
    scope: params.get('scope') ?? 'openid email profile',
    state,
  };
  if (nonce) parameters.nonce = nonce;
  if (pkce === 'S256') {
    parameters.code_challenge = await client.calculatePKCECodeChallenge(codeVerifier);
    parameters.code_challenge_method = 'S256';
  } else if (pkce === 'plain') {
    parameters.code_challenge = codeVerifier;
    parameters.code_challenge_method = 'plain';
  }
  for (const [key, value] of params) if (key !== 'scope') parameters[key] = value;

  const id = randomUUID();
  const maxAge = params.has('max_age') ? Number(params.get('max_age')) : undefined;
  transactions.set(id, {
    app: app.name,
    config,
    state,
    nonce,
    maxAge,
    codeVerifier: wrongVerifier ? client.randomPKCECodeVerifier() : codeVerifier,
    request: parameters,
  });
  const location = client.buildAuthorizationUrl(config, parameters);
  // A form_post response arrives as a cross-site POST (the provider is http://localhost:PORT,
  // this app http://127.0.0.1:PORT), which carries no SameSite=Lax cookie: as real apps do
  // (ASP.NET Core's correlation cookie), that transaction's cookie is SameSite=None; Secure,
  // which browsers accept from a loopback origin over http.
  const sameSite = parameters.response_mode === 'form_post' ? 'None; Secure' : 'Lax';
  response.writeHead(302, {
    location: location.href,
    'set-cookie': `rp_tx_${app.name}=${id}; Path=/; HttpOnly; SameSite=${sameSite}`,
    'cache-control': 'no-store',
  });
  response.end();
}

function cookie(request, name) {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

async function exchange(tx, currentUrl) {
  return client.authorizationCodeGrant(tx.config, currentUrl, {
    pkceCodeVerifier: tx.codeVerifier,
    expectedState: tx.state,
    expectedNonce: tx.nonce,
    maxAge: tx.maxAge,
    idTokenExpected: true,
  });
}

async function callback(app, url, request, response) {
  const tx = transactions.get(cookie(request, `rp_tx_${app.name}`));
  // A form_post response: openid-client reads the parameters from a Request's form body.
  let current = url;
  let received = url.searchParams;
  if (request.method === 'POST') {
    const body = await readBody(request);
    received = new URLSearchParams(body);
    current = new Request(url, {
      method: 'POST',
      headers: { 'content-type': request.headers['content-type'] ?? '' },
      body,
    });
  }
  const record = {
    callback: Object.fromEntries(received),
    callback_method: request.method,
    request: tx ? tx.request : null,
  };
  let result;
  if (!tx) {
    result = { ok: false, error: null, message: 'no transaction for this browser' };
  } else {
    try {
      const tokens = await exchange(tx, current);
      result = tokenResult(tokens);
      try {
        result.userinfo = await client.fetchUserInfo(tx.config, tokens.access_token, result.claims.sub);
      } catch (error) {
        result.userinfo_error = failure(error);
      }
    } catch (error) {
      result = failure(error);
    }
    // For a replay: the response as a URL (a Request's body is read once).
    const replayUrl = new URL(url);
    if (request.method === 'POST') for (const [k, v] of received) replayUrl.searchParams.append(k, v);
    tx.callbackUrl = replayUrl;
  }
  Object.assign(record, result);
  record.index = app.flows.length;
  app.flows.push(record);
  if (tx) app.transactions.push(tx);
  page(response, 200, result.ok ? 'Signed in to the test app' : 'Sign-in failed at the test app', record);
}

async function refresh(app, body) {
  const config = await configure(app);
  try {
    return tokenResult(await client.refreshTokenGrant(config, body.refresh_token));
  } catch (error) {
    return failure(error);
  }
}

async function replay(app, body) {
  const tx = app.transactions[body.index];
  try {
    return tokenResult(await exchange(tx, tx.callbackUrl));
  } catch (error) {
    return failure(error);
  }
}

async function userinfo(app, body) {
  const config = await configure(app);
  try {
    return { ok: true, userinfo: await client.fetchUserInfo(config, body.access_token, body.sub) };
  } catch (error) {
    return failure(error);
  }
}

// An API that received the token asks the provider about it (RFC 7662), as this app.
async function introspect(app, body) {
  const config = await configure(app);
  try {
    return { ok: true, introspection: await client.tokenIntrospection(config, body.token) };
  } catch (error) {
    return failure(error);
  }
}

// What the app's operator does after `threshold apps rotate-secret` (or gets wrong).
async function secret(app, body) {
  app.client_secret = body.client_secret;
  return { ok: true };
}

async function jwksOf(app) {
  const config = await configure(app);
  const metadata = config.serverMetadata();
  return { metadata, jwks: jose.createRemoteJWKSet(new URL(metadata.jwks_uri)) };
}

async function verify(app, body) {
  const { metadata, jwks } = await jwksOf(app);
  try {
    const { payload, protectedHeader } = await jose.jwtVerify(body.id_token, jwks, {
      issuer: metadata.issuer,
      audience: app.client_id,
      // The token may have expired meanwhile; the signature and kid are what is checked here.
      currentDate: new Date(decode(body.id_token).payload.iat * 1000),
    });
    return { ok: true, header: protectedHeader, payload };
  } catch (error) {
    return failure(error);
  }
}

// OpenID Connect Back-Channel Logout 1.0 §2.6: the checks a relying party makes.
async function backchannel(app, request, response) {
  const form = new URLSearchParams(await readBody(request));
  const token = form.get('logout_token');
  const record = { received_at: Date.now() / 1000, logout_token: token };
  try {
    if (!token) throw new Error('no logout_token');
    const { metadata, jwks } = await jwksOf(app);
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
      issuer: metadata.issuer,
      audience: app.client_id,
      clockTolerance: 0,
      currentDate: new Date((Date.now() / 1000 + clockSkew) * 1000),
      requiredClaims: ['iat', 'exp', 'jti', 'events'],
      typ: 'logout+jwt', // §2.4's explicit typing, which Threshold sends
    });
    if (!payload.events || typeof payload.events[BACKCHANNEL_EVENT] !== 'object') {
      throw new Error('events lacks the back-channel logout event');
    }
    if (!payload.sid && !payload.sub) throw new Error('neither sid nor sub');
    if ('nonce' in payload) throw new Error('a logout token must not have a nonce');
    if (app.seen_jti.has(payload.jti)) throw new Error('jti replayed');
    app.seen_jti.add(payload.jti);
    Object.assign(record, { ok: true, header: protectedHeader, claims: payload });
  } catch (error) {
    Object.assign(record, failure(error));
  }
  app.logouts.push(record);
  response.writeHead(record.ok ? 200 : 400, { 'cache-control': 'no-store' });
  response.end();
}

function endSession(app, url, response) {
  const flow = [...app.flows].reverse().find((item) => item.ok && item.id_token);
  const state = client.randomState();
  app.logout_state = state;
  const config = app.lastConfig;
  const parameters = { post_logout_redirect_uri: `${origin}/logged-out/${app.name}`, state };
  if (flow && url.searchParams.get('rp_hint') !== 'omit') parameters.id_token_hint = flow.id_token;
  const location = client.buildEndSessionUrl(config, parameters);
  if (url.searchParams.get('rp_method') === 'post') {
    // RP-Initiated Logout §2: the OP must take POST too. The parameters go in a form this page
    // submits by itself, cross-site, as an app's auto-submitting logout form does.
    return autoPost(response, `${location.origin}${location.pathname}`, location.searchParams);
  }
  response.writeHead(302, { location: location.href, 'cache-control': 'no-store' });
  response.end();
}

function autoPost(response, action, parameters) {
  const escape = (text) => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  const fields = [...parameters]
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join('');
  response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  response.end(
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signing out</title></head>' +
      `<body><form method="post" action="${escape(action)}">${fields}</form>` +
      '<script>document.forms[0].submit();</script></body></html>',
  );
}

async function register(body) {
  const app = {
    name: body.name,
    issuer: body.issuer,
    client_id: body.client_id,
    client_secret: body.client_secret ?? null,
    auth: body.auth ?? 'basic',
    id_token_alg: body.id_token_alg ?? null,
    flows: [],
    transactions: [],
    logouts: [],
    logged_out: [],
    seen_jti: new Set(),
  };
  app.lastConfig = await configure(app);
  apps.set(app.name, app);
  return { ok: true, metadata: app.lastConfig.serverMetadata() };
}

function describe(app) {
  return {
    name: app.name,
    client_id: app.client_id,
    flows: app.flows,
    logouts: app.logouts,
    logged_out: app.logged_out,
  };
}

async function route(request, response) {
  const url = new URL(request.url, origin);
  const [, first, name, action] = url.pathname.split('/');
  const app = apps.get(name);
  if (request.method === 'POST' && first === 'clock') {
    clockSkew = Number(JSON.parse(await readBody(request)).skew);
    return json(response, 200, { ok: true, skew: clockSkew });
  }
  if (request.method === 'POST' && first === 'clients' && !name) {
    return json(response, 200, await register(JSON.parse(await readBody(request))));
  }
  if (!app) return json(response, 404, { ok: false, message: `no app ${name}` });
  if (request.method === 'GET' && first === 'login') return startLogin(app, url, response);
  if ((request.method === 'GET' || request.method === 'POST') && first === 'cb') {
    return callback(app, url, request, response);
  }
  if (request.method === 'GET' && first === 'logout') return endSession(app, url, response);
  if (request.method === 'GET' && first === 'logged-out') {
    const record = {
      query: Object.fromEntries(url.searchParams),
      state_matches: url.searchParams.get('state') === app.logout_state,
    };
    app.logged_out.push(record);
    return page(response, 200, 'Signed out of the test app', record);
  }
  if (request.method === 'POST' && first === 'backchannel') return backchannel(app, request, response);
  if (first === 'clients' && request.method === 'GET' && !action) return json(response, 200, describe(app));
  if (first === 'clients' && request.method === 'POST' && action === 'introspect') {
    return json(response, 200, await introspect(app, JSON.parse(await readBody(request))));
  }
  if (first === 'clients' && request.method === 'POST') {
    const body = JSON.parse(await readBody(request));
    const handlers = { refresh, replay, userinfo, verify, secret };
    if (handlers[action]) return json(response, 200, await handlers[action](app, body));
  }
  return json(response, 404, { ok: false, message: 'no such route' });
}

const server = http.createServer((request, response) => {
  route(request, response).catch((error) => json(response, 500, failure(error)));
});
server.listen(0, '127.0.0.1', () => {
  origin = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(`listening ${server.address().port}\n`);
});
