#!/usr/bin/env node
// Drives published Node clients against gateway-sim:
//   * flutterwave-node-v3 1.4.1 (Flutterwave's official SDK) on /flutterwave/v3;
//   * paystack 2.0.1 (kehers) on /paystack.
//
//   NODE_PATH=<dir>/node_modules node flutterwave_client.js http://127.0.0.1:PORT
//
// One line per check: `ok   <client> <call>` or `FAIL <client> <call>: why`.
// Exits 1 if any check failed, and always exits explicitly: the Flutterwave
// SDK starts telemetry requests to external hosts when constructed (see
// utils/logger.js in the SDK), which must not keep this process alive.
'use strict';

const BASE = (process.argv[2] || process.env.SIM_BASE || '').replace(/\/+$/, '');
if (!BASE) {
  console.error('usage: node flutterwave_client.js http://127.0.0.1:PORT');
  process.exit(2);
}
const FLW_SECRET = process.env.FLUTTERWAVE_SECRET_KEY || 'FLWSECK_TEST-payguard-sim-X';
const PAYSTACK_SECRET = process.env.PAYSTACK_SECRET_KEY || 'sk_test_payguard_sim';
// Any non-empty public key; a FLWPUBK_TEST- one keeps the SDK in "sandbox"
// telemetry mode (it never logs transactions).
const FLW_PUBLIC = 'FLWPUBK_TEST-conformance-X';
const RUN = Math.random().toString(36).slice(2, 12);

const failures = [];

class CheckFailed extends Error {}

async function check(client, call, body) {
  try {
    const result = await body();
    console.log(`ok   ${client} ${call}`);
    return result;
  } catch (error) {
    failures.push(`${client} ${call}`);
    const why = error instanceof CheckFailed ? error.message : `threw ${error && error.name}: ${error && error.message}`;
    console.log(`FAIL ${client} ${call}: ${why}`);
    return undefined;
  }
}

// `value` at a dotted path (`data.customer.email`, `data.0.id`), or a
// CheckFailed naming the first missing step.
function need(value, path) {
  let current = value;
  const walked = [];
  for (const step of path.split('.')) {
    walked.push(step);
    if (current === null || typeof current !== 'object' || !(step in current)) {
      throw new CheckFailed(`missing field ${walked.join('.')}`);
    }
    current = current[step];
  }
  return current;
}

function expect(value, path, wanted) {
  const got = need(value, path);
  if (got !== wanted) {
    throw new CheckFailed(`${path} is ${JSON.stringify(got)}, expected ${JSON.stringify(wanted)}`);
  }
  return got;
}

function present(value, path) {
  const got = need(value, path);
  if (got === null || got === undefined || got === '') {
    throw new CheckFailed(`${path} is ${JSON.stringify(got)}, expected a value`);
  }
  return got;
}

function number(value, path) {
  const got = need(value, path);
  if (typeof got !== 'number' || !Number.isFinite(got)) {
    throw new CheckFailed(`${path} is ${JSON.stringify(got)}, expected a number`);
  }
  return got;
}

function contains(list, path, wanted, what) {
  if (!Array.isArray(list)) throw new CheckFailed(`data is ${JSON.stringify(list)}, expected a list`);
  if (!list.some((item) => item && need(item, path) === wanted)) {
    throw new CheckFailed(`${what} ${JSON.stringify(wanted)} not in the list of ${list.length}`);
  }
}

// The SDK hands back the JSON body whatever the HTTP status; success is
// `status === "success"`.
function flwOk(body) {
  if (body === null || typeof body !== 'object') {
    throw new CheckFailed(`body is ${JSON.stringify(body)}, expected a JSON object`);
  }
  if (body.status !== 'success') {
    throw new CheckFailed(`status=${JSON.stringify(body.status)} (message ${JSON.stringify(body.message)})`);
  }
  return body;
}

// Plain HTTP for what neither SDK covers: JSON in, JSON out.
async function http(method, url, payload, headers = {}) {
  const response = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new CheckFailed(`${method} ${url}: HTTP ${response.status}, body is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
  return { status: response.status, body };
}

async function control(path, payload) {
  const { status, body } = await http('POST', `${BASE}/_sim${path}`, payload);
  if (status !== 200) throw new CheckFailed(`POST /_sim${path}: HTTP ${status} ${JSON.stringify(body)}`);
  return body;
}

const flwApi = (path) => `${BASE}/flutterwave/v3${path}`;
const flwAuth = { authorization: `Bearer ${FLW_SECRET}` };

// ---------------------------------------------------------------------------
// flutterwave-node-v3 1.4.1
// ---------------------------------------------------------------------------

async function flutterwaveJourney() {
  const C = 'flutterwave-node-v3';
  const Flutterwave = require('flutterwave-node-v3');
  // The third argument replaces the SDK's base URL verbatim, and the SDK
  // concatenates `base + path` where its paths carry the version and
  // sometimes a leading slash (`v3/transfers`, `/v3/transfers/{id}`). So
  // the base is the simulator's /flutterwave/ (trailing slash, no v3);
  // leading-slash paths then arrive as /flutterwave//v3/..., which the
  // simulator must accept like Flutterwave's servers do.
  const flw = new Flutterwave(FLW_PUBLIC, FLW_SECRET, `${BASE}/flutterwave/`);

  const txRef = `flw-conf-${RUN}`;
  const email = 'guest@example.com';

  // Flutterwave Standard (POST /v3/payments) is not in the SDK: plain fetch.
  const payment = await check(C, 'POST /v3/payments (fetch; not in the SDK)', async () => {
    const { body } = await http(
      'POST',
      flwApi('/payments'),
      {
        tx_ref: txRef,
        amount: 2500,
        currency: 'NGN',
        redirect_url: 'https://merchant.example/return',
        customer: { email, name: 'Ada Guest', phonenumber: '08012345678' },
        meta: { booking: 'bk-conformance' },
      },
      flwAuth,
    );
    flwOk(body);
    present(body, 'data.link');
    return body;
  });
  if (!payment) return;

  await check(C, 'Transaction.verify_by_tx before any attempt (expects "No transaction was found")', async () => {
    const body = await flw.Transaction.verify_by_tx({ tx_ref: txRef });
    expect(body, 'status', 'error');
    return body;
  });

  await check(C, 'control plane: checkout attempted', () => control(`/charges/${txRef}/complete`, { outcome: 'attempted' }));

  await check(C, 'Transaction.verify_by_tx (attempted: pending)', async () => {
    const body = flwOk(await flw.Transaction.verify_by_tx({ tx_ref: txRef }));
    expect(body, 'data.status', 'pending');
    return body;
  });

  await check(C, 'control plane: charge paid', () => control(`/charges/${txRef}/complete`, { outcome: 'success' }));

  // What the SDK itself reads (telemetry) and what Flutterwave's
  // verification guide tells an integration to compare.
  const verified = (body) => {
    flwOk(body);
    expect(body, 'data.status', 'successful');
    expect(body, 'data.amount', 2500);
    expect(body, 'data.currency', 'NGN');
    expect(body, 'data.tx_ref', txRef);
    number(body, 'data.app_fee');
    number(body, 'data.charged_amount');
    present(body, 'data.payment_type');
    present(body, 'data.flw_ref');
    expect(body, 'data.customer.email', email);
    expect(body, 'data.customer.name', 'Ada Guest');
    expect(body, 'data.meta.booking', 'bk-conformance');
    if (!Number.isInteger(need(body, 'data.id'))) throw new CheckFailed('data.id is not an integer');
    return body;
  };

  const byRef = await check(C, 'Transaction.verify_by_tx', async () =>
    verified(await flw.Transaction.verify_by_tx({ tx_ref: txRef })));
  const transactionId = byRef && byRef.data.id;

  if (transactionId) {
    await check(C, 'Transaction.verify (by id)', async () => {
      const body = verified(await flw.Transaction.verify({ id: String(transactionId) }));
      expect(body, 'data.id', transactionId);
      return body;
    });
  }

  const listed = async (call, id) => {
    const body = flwOk(await call());
    number(body, 'meta.page_info.total');
    number(body, 'meta.page_info.current_page');
    number(body, 'meta.page_info.total_pages');
    contains(body.data, 'id', id, 'id');
    return body;
  };

  if (transactionId) {
    await check(C, 'Transaction.fetch (GET //v3/transactions?)', () => listed(() => flw.Transaction.fetch(), transactionId));

    await check(C, 'Transaction.refund (partial)', async () => {
      // The SDK's joi schema wants `id` as a string and `amount` > 0.
      const body = flwOk(await flw.Transaction.refund({ id: String(transactionId), amount: 500 }));
      present(body, 'data.id');
      expect(body, 'data.amount_refunded', 500);
      expect(body, 'data.tx_id', transactionId);
      present(body, 'data.status');
      return body;
    });
  }

  // --- transfers -----------------------------------------------------------
  const transfer = {
    account_bank: '044',
    account_number: '0690000040',
    amount: 1000,
    currency: 'NGN',
    narration: 'conformance payout',
  };
  const reference = `flw_conf_${RUN}`;
  const created = (body) => {
    flwOk(body);
    if (!Number.isInteger(need(body, 'data.id'))) throw new CheckFailed('data.id is not an integer');
    expect(body, 'data.status', 'NEW');
    expect(body, 'data.amount', 1000);
    expect(body, 'data.currency', 'NGN');
    expect(body, 'data.account_number', transfer.account_number);
    present(body, 'data.reference');
    number(body, 'data.fee');
    return body;
  };

  const withReference = await check(C, 'Transfer.initiate (with reference)', async () => {
    const body = created(await flw.Transfer.initiate({ ...transfer, reference }));
    expect(body, 'data.reference', reference);
    return body;
  });

  await check(C, 'Transfer.initiate (without reference)', async () => {
    const { reference: _omitted, ...rest } = { ...transfer, amount: 1000 };
    return created(await flw.Transfer.initiate(rest));
  });

  const transferId = withReference && withReference.data.id;
  if (transferId) {
    await check(C, 'Transfer.get_a_transfer (GET //v3/transfers/{id})', async () => {
      const body = flwOk(await flw.Transfer.get_a_transfer({ id: String(transferId) }));
      expect(body, 'data.id', transferId);
      expect(body, 'data.reference', reference);
      present(body, 'data.status');
      return body;
    });

    await check(C, 'Transfer.fetch (GET //v3/transfers?)', () => listed(() => flw.Transfer.fetch(), transferId));
  }

  await check(C, 'Transfer.get_a_transfer (unknown id: JSON error, no throw)', async () => {
    const body = await flw.Transfer.get_a_transfer({ id: '987654321' });
    expect(body, 'status', 'error');
    present(body, 'message');
    return body;
  });

  await check(C, 'Transfer.fee', async () => {
    const body = flwOk(await flw.Transfer.fee({ amount: 1000, currency: 'NGN' }));
    const fees = need(body, 'data');
    if (!Array.isArray(fees) || fees.length === 0) throw new CheckFailed(`data is ${JSON.stringify(fees)}, expected a non-empty list`);
    number(fees[0], 'fee');
    expect(fees[0], 'currency', 'NGN');
    return body;
  });

  // Retries: the SDK 1.4.1 has none, so plain fetch. A retry needs a FAILED
  // transfer: make one and fail it through the control plane before the
  // simulator's auto-settlement (--auto-settle-ms) marks it successful. If
  // auto-settlement wins the race (a very slow machine), try again.
  const failed = await check(C, 'control plane: fail a transfer', async () => {
    for (let attempt = 1; ; attempt += 1) {
      const ref = `flw_retry_${RUN}_${attempt}`;
      const body = created(await flw.Transfer.initiate({ ...transfer, reference: ref }));
      const { status, body: answer } = await http('POST', `${BASE}/_sim/transfers/${ref}/settle`, { outcome: 'failed' });
      if (status === 200) return { id: body.data.id, reference: ref };
      if (status !== 409 || attempt === 3) throw new CheckFailed(`settle failed: HTTP ${status} ${JSON.stringify(answer)}`);
    }
  });

  if (failed) {
    await check(C, 'Transfer.get_a_transfer (FAILED)', async () => {
      const body = flwOk(await flw.Transfer.get_a_transfer({ id: String(failed.id) }));
      expect(body, 'data.status', 'FAILED');
      present(body, 'data.complete_message');
      return body;
    });

    const retry = await check(C, 'POST /v3/transfers/{id}/retries (fetch; not in the SDK)', async () => {
      const { body } = await http('POST', flwApi(`/transfers/${failed.id}/retries`), undefined, flwAuth);
      flwOk(body);
      // a retry is a new transfer: new id, `<reference>_RETRY_<n>`, NEW
      if (need(body, 'data.id') === failed.id) throw new CheckFailed('data.id is the original id, expected a new transfer');
      expect(body, 'data.reference', `${failed.reference}_RETRY_1`);
      expect(body, 'data.status', 'NEW');
      return body;
    });

    if (retry) {
      await check(C, 'GET /v3/transfers/{id}/retries (fetch; not in the SDK)', async () => {
        const { body } = await http('GET', flwApi(`/transfers/${failed.id}/retries`), undefined, flwAuth);
        flwOk(body);
        contains(need(body, 'data'), 'id', retry.data.id, 'retry id');
        return body;
      });
    }
  }

  await newestFirst(flw, transfer, email);

  // --- miscellaneous -------------------------------------------------------
  await check(C, 'Bank.country (NG)', async () => {
    const body = flwOk(await flw.Bank.country({ country: 'NG' }));
    contains(need(body, 'data'), 'code', '044', 'bank code');
    present(body.data[0], 'name');
    number(body.data[0], 'id');
    return body;
  });

  await check(C, 'Misc.verify_Account (POST v3/accounts/resolve)', async () => {
    const body = flwOk(await flw.Misc.verify_Account({ account_number: '0690000032', account_bank: '044' }));
    expect(body, 'data.account_number', '0690000032');
    present(body, 'data.account_name');
    return body;
  });

  await check(C, 'Misc.bal (GET //v3/balances?)', async () => {
    const body = flwOk(await flw.Misc.bal());
    const wallets = need(body, 'data');
    if (!Array.isArray(wallets)) throw new CheckFailed('data is not a list');
    const ngn = wallets.find((wallet) => wallet.currency === 'NGN');
    if (!ngn) throw new CheckFailed('no NGN wallet');
    number(ngn, 'available_balance');
    number(ngn, 'ledger_balance');
    return body;
  });
}

// Lists come newest first (page 1 holds the latest objects; Flutterwave
// pages hold 10). Each probe makes two objects whose references sort the
// other way round from their creation order, so an order by reference
// cannot pass by chance.
async function newestFirst(flw, transfer, email) {
  const C = 'flutterwave-node-v3';
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const descending = (items) => {
    const stamps = items.map((item) => item.created_at);
    const sorted = [...stamps].sort().reverse();
    if (stamps.join() !== sorted.join()) {
      const order = items.slice(0, 6).map((item) => `${item.tx_ref || item.reference} (${item.created_at})`);
      throw new CheckFailed(`not newest first: ${order.join(', ')}`);
    }
  };

  await check(C, 'Transaction.fetch is newest first', async () => {
    const older = `ord-b-${RUN}`;
    const newer = `ord-a-${RUN}`;
    for (const txRef of [older, newer]) {
      const { body } = await http('POST', flwApi('/payments'), { tx_ref: txRef, amount: 100, currency: 'NGN', redirect_url: 'https://merchant.example/return', customer: { email } }, flwAuth);
      flwOk(body);
      await control(`/charges/${txRef}/complete`, { outcome: 'success' });
      await sleep(10); // distinct created_at
    }
    const body = flwOk(await flw.Transaction.fetch());
    if (need(body, 'data.0.tx_ref') !== newer) {
      throw new CheckFailed(`data[0] is ${body.data[0].tx_ref}, expected the newest, ${newer}`);
    }
    descending(body.data);
    return body;
  });

  await check(C, 'Transfer.fetch is newest first', async () => {
    const older = `ord_b_${RUN}`;
    const newer = `ord_a_${RUN}`;
    for (const reference of [older, newer]) {
      flwOk(await flw.Transfer.initiate({ ...transfer, reference }));
      await sleep(10);
    }
    const body = flwOk(await flw.Transfer.fetch());
    if (need(body, 'data.0.reference') !== newer) {
      throw new CheckFailed(`data[0] is ${body.data[0].reference}, expected the newest, ${newer}`);
    }
    descending(body.data);
    return body;
  });
}

// ---------------------------------------------------------------------------
// paystack 2.0.1 (kehers)
// ---------------------------------------------------------------------------

// The package has no base-URL option: index.js keeps `root =
// 'https://api.paystack.co'` in a closure and hands every call to the
// `request` module. We load that same `request` module first and replace
// its cached export with a wrapper that rewrites that host to the
// simulator's /paystack, so the package's own code runs unchanged.
function loadPaystack() {
  const path = require('path');
  const packageDir = path.dirname(require.resolve('paystack/package.json'));
  const requestPath = require.resolve('request', { paths: [packageDir] });
  const request = require(requestPath);
  const viaSimulator = (options, callback) =>
    request({ ...options, url: options.url.replace(/^https:\/\/api\.paystack\.co/, `${BASE}/paystack`) }, callback);
  require.cache[requestPath].exports = Object.assign(viaSimulator, request);
  return require('paystack');
}

// The package resolves (never rejects) with the body; on `status: false`
// it resolves with that error body (its .catch returns it).
function paystackOk(body) {
  if (body instanceof Error) throw new CheckFailed(`error ${body.message}`);
  if (body === null || typeof body !== 'object') throw new CheckFailed(`body is ${JSON.stringify(body)}`);
  if (body.status !== true) {
    throw new CheckFailed(`status=${JSON.stringify(body.status)} (message ${JSON.stringify(body.message)})`);
  }
  return body;
}

async function paystackJourney() {
  const C = 'paystack(npm)';
  const paystack = loadPaystack()(PAYSTACK_SECRET);
  const reference = `npm-${RUN}`;

  const initialized = await check(C, 'transaction.initialize', async () => {
    const body = paystackOk(await paystack.transaction.initialize({ email: 'npm@example.com', amount: 350000, reference }));
    expect(body, 'data.reference', reference);
    present(body, 'data.authorization_url');
    present(body, 'data.access_code');
    return body;
  });
  if (!initialized) return;

  await check(C, 'control plane: pay the charge', () => control(`/charges/${reference}/complete`, { outcome: 'success' }));

  await check(C, 'transaction.verify', async () => {
    const body = paystackOk(await paystack.transaction.verify(reference));
    expect(body, 'data.status', 'success');
    expect(body, 'data.amount', 350000);
    expect(body, 'data.reference', reference);
    expect(body, 'data.customer.email', 'npm@example.com');
    present(body, 'data.paid_at');
    return body;
  });

  await check(C, 'transaction.list', async () => {
    const body = paystackOk(await paystack.transaction.list({ perPage: 50 }));
    contains(need(body, 'data'), 'reference', reference, 'reference');
    number(body, 'meta.total');
    return body;
  });

  await check(C, 'transaction.verify (unknown reference: JSON error)', async () => {
    // the package resolves with the error body when status is false
    const body = await paystack.transaction.verify(`unknown-${RUN}`);
    if (!body || body.status !== false || !body.message) throw new CheckFailed(`expected status false, got ${JSON.stringify(body)}`);
    return body;
  });

  await check(C, 'misc.list_banks', async () => {
    const body = paystackOk(await paystack.misc.list_banks({ perPage: 100 }));
    contains(need(body, 'data'), 'code', '058', 'bank code');
    return body;
  });
}

(async () => {
  try {
    await flutterwaveJourney();
  } catch (error) {
    failures.push('flutterwave-node-v3 (journey)');
    console.log(`FAIL flutterwave-node-v3 journey aborted: ${error && error.stack}`);
  }
  try {
    await paystackJourney();
  } catch (error) {
    failures.push('paystack(npm) (journey)');
    console.log(`FAIL paystack(npm) journey aborted: ${error && error.stack}`);
  }
  if (failures.length) {
    console.log(`flutterwave_client.js: ${failures.length} check(s) failed: ${failures.join(', ')}`);
  } else {
    console.log('flutterwave_client.js: all checks passed');
  }
  // Explicit exit: the SDK's telemetry sockets must not keep us alive.
  process.exit(failures.length ? 1 : 0);
})();
