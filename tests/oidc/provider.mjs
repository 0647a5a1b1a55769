// An OpenID provider for devid's tests: oauth2-mock-server (npm) with its own keys and
// issuer URL, plus what the tests need on top of it:
//
// - /_test/*: control endpoints. POST /_test/token {claims, header, kid} returns an ID
//   token the provider signs with one of its keys (a claim set to null is removed);
//   POST /_test/profile {claims} sets claims merged into every ID token /token issues
//   from then on; POST /_test/rotate {algs} replaces every signing key with new ones;
//   POST /_test/jwks-headers {headers} sets headers on /jwks answers; GET /_test/keys
//   lists the keys; GET /_test/stats counts the requests per path.
// - RFC 8628 device authorization, which oauth2-mock-server does not offer:
//   POST /device_authorization, GET /device?user_code=… (the person approving), and the
//   urn:ietf:params:oauth:grant-type:device_code grant at /token.
//
// Usage: node provider.mjs [--port N] [--algs RS256,ES256]; prints one JSON line
// {"issuer": "http://127.0.0.1:PORT", "keys": [...]} once it listens; stops on SIGTERM.
import { randomBytes, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import express from "express";
import { OAuth2Issuer, OAuth2Service } from "oauth2-mock-server";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(option("--port", "0"));
const initialAlgs = option("--algs", "RS256,ES256").split(",");
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

let issuerUrl = "";
let profile = {};
let jwksHeaders = {};
const stats = {};
const devices = new Map(); // device_code -> {userCode, clientId, approved, expires}
let current = null; // {issuer, service}

function merge(payload, claims) {
  for (const [name, value] of Object.entries(claims)) {
    if (value === null) {
      delete payload[name];
    } else {
      payload[name] = value;
    }
  }
}

async function makeProvider(algs) {
  const issuer = new OAuth2Issuer();
  issuer.url = issuerUrl;
  for (const alg of algs) {
    await issuer.keys.generate(alg);
  }
  const service = new OAuth2Service(issuer);
  service.on("beforeTokenSigning", (token, req) => {
    // ID tokens carry the client as audience; the access tokens of these grants do not.
    const grant = req.body ? req.body.grant_type : undefined;
    if ("aud" in token.payload && grant !== "client_credentials") {
      merge(token.payload, profile);
    }
  });
  return { issuer, service };
}

function keysOf(issuer) {
  return issuer.keys.toJSON().map((k) => ({ kid: k.kid, alg: k.alg }));
}

const app = express();
app.disable("x-powered-by");
app.use((req, _res, next) => {
  stats[req.path] = (stats[req.path] || 0) + 1;
  next();
});

app.get("/.well-known/openid-configuration", (_req, res) => {
  const algs = [...new Set(keysOf(current.issuer).map((k) => k.alg))];
  res.json({
    issuer: issuerUrl,
    authorization_endpoint: `${issuerUrl}/authorize`,
    token_endpoint: `${issuerUrl}/token`,
    device_authorization_endpoint: `${issuerUrl}/device_authorization`,
    userinfo_endpoint: `${issuerUrl}/userinfo`,
    jwks_uri: `${issuerUrl}/jwks`,
    response_types_supported: ["code"],
    grant_types_supported: ["authorization_code", "password", "client_credentials", DEVICE_GRANT],
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: algs,
    token_endpoint_auth_methods_supported: ["none", "client_secret_post", "client_secret_basic"],
    code_challenge_methods_supported: ["plain", "S256"],
    scopes_supported: ["openid", "email", "profile", "groups"],
  });
});

app.get("/jwks", (_req, res) => {
  res.set(jwksHeaders);
  res.json({ keys: current.issuer.keys.toJSON() });
});

const control = express.Router();
control.use(express.json());
control.post("/token", async (req, res) => {
  const { claims = {}, header = {}, kid } = req.body;
  const token = await current.issuer.buildToken({
    kid,
    scopesOrTransform: (h, payload) => {
      Object.assign(h, header);
      merge(payload, claims);
    },
  });
  res.json({ id_token: token });
});
control.post("/profile", (req, res) => {
  profile = req.body.claims || {};
  res.json({ profile });
});
control.post("/rotate", async (req, res) => {
  current = await makeProvider(req.body.algs || initialAlgs);
  res.json({ keys: keysOf(current.issuer) });
});
control.post("/jwks-headers", (req, res) => {
  jwksHeaders = req.body.headers || {};
  res.json({ headers: jwksHeaders });
});
control.get("/keys", (_req, res) => res.json({ keys: keysOf(current.issuer) }));
control.get("/stats", (_req, res) => res.json(stats));
app.use("/_test", control);

// RFC 8628: device authorization.
app.post("/device_authorization", express.urlencoded({ extended: false }), (req, res) => {
  const clientId = req.body.client_id;
  if (typeof clientId !== "string" || !clientId) {
    res.status(400).json({ error: "invalid_client" });
    return;
  }
  const deviceCode = randomUUID();
  const userCode = randomBytes(4).toString("hex").toUpperCase();
  devices.set(deviceCode, { userCode, clientId, approved: false, expires: Date.now() + 600_000 });
  res.json({
    device_code: deviceCode,
    user_code: userCode,
    verification_uri: `${issuerUrl}/device`,
    verification_uri_complete: `${issuerUrl}/device?user_code=${userCode}`,
    expires_in: 600,
    interval: 1,
  });
});
app.get("/device", (req, res) => {
  for (const entry of devices.values()) {
    if (entry.userCode === req.query.user_code) {
      entry.approved = true;
      res.type("text/plain").send("Device approved; return to your terminal.\n");
      return;
    }
  }
  res.status(404).type("text/plain").send("unknown code\n");
});
app.post("/token", express.urlencoded({ extended: false }), async (req, res, next) => {
  if (req.body.grant_type !== DEVICE_GRANT) {
    next();
    return;
  }
  res.set({ "Cache-Control": "no-store" });
  const entry = devices.get(req.body.device_code);
  if (entry === undefined || entry.clientId !== req.body.client_id) {
    res.status(400).json({ error: "invalid_grant" });
    return;
  }
  if (Date.now() > entry.expires) {
    res.status(400).json({ error: "expired_token" });
    return;
  }
  if (!entry.approved) {
    res.status(400).json({ error: "authorization_pending" });
    return;
  }
  devices.delete(req.body.device_code);
  const idToken = await current.service.buildToken(req, 3600, (_h, payload) => {
    Object.assign(payload, { sub: "johndoe", aud: entry.clientId });
  });
  res.json({
    access_token: randomUUID(),
    token_type: "Bearer",
    expires_in: 3600,
    id_token: idToken,
  });
});

// Everything else is oauth2-mock-server itself (/authorize, /token, /userinfo, …).
app.use((req, res) => current.service.requestHandler(req, res));

const server = createServer(app);
server.listen(port, "127.0.0.1", async () => {
  issuerUrl = `http://127.0.0.1:${server.address().port}`;
  current = await makeProvider(initialAlgs);
  process.stdout.write(`${JSON.stringify({ issuer: issuerUrl, keys: keysOf(current.issuer) })}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
