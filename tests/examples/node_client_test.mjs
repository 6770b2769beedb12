// examples/node/shop_client.mjs against a live shopd over real TCP.
//
//   node node_client_test.mjs SHOPD EXAMPLE_DIR
//
// Exits 77 (ctest: skipped) when the zeromq npm package is not installed
// in EXAMPLE_DIR (scripts/install-deps.sh tries `npm ci` there). shopd binds
// ephemeral ports and the test reads the endpoints it logs; every wait is
// on a reply, an event or a log line.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { test, after, before } from "node:test";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [shopdPath, exampleDir] = process.argv.slice(2);
let shop;
try {
  shop = await import(pathToFileURL(join(resolve(exampleDir), "shop_client.mjs")).href);
} catch (e) {
  console.log(`skipped: the example cannot load (${e.message}); run npm ci in ${exampleDir}`);
  process.exit(77);
}
const { ShopClient, ShopError, tail, newCommandId } = shop;

let shopd;
let lines;
let endpoints = {};

async function waitFor(pattern) {
  for (;;) {
    const { value, done } = await lines.next();
    if (done) throw new Error(`shopd exited before logging ${pattern}`);
    const found = value.match(pattern);
    if (found) return found;
  }
}

before(async () => {
  shopd = spawn(shopdPath, ["--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
    "--events-json", "tcp://127.0.0.1:*", "--no-catalog"], { stdio: ["ignore", "pipe", "pipe"] });
  lines = createInterface({ input: shopd.stderr })[Symbol.asyncIterator]();
  const serving = await waitFor(/serving commands on (\S+), events on (\S+) /);
  endpoints.commands = serving[1];
  endpoints.eventsJson = (await waitFor(/publishing events as JSON on (\S+)/))[1];
  const client = new ShopClient(endpoints.commands);
  const reply = await client.call("addProduct", { product: "apple", price: 150, stock: 100 });
  assert.ok(reply.accepted, JSON.stringify(reply));
  client.close();
});

after(async () => {
  const exited = shopd.exitCode !== null
    ? Promise.resolve(shopd.exitCode)
    : new Promise((done) => shopd.on("exit", (code) => done(code)));
  shopd.kill("SIGTERM");
  assert.equal(await exited, 0);
});

test("commands of every kind, a rejection and a retry", async () => {
  const c = new ShopClient(endpoints.commands);
  let r = await c.call("createCustomer", { customer: "js-ann", initialBalance: 1000 });
  assert.equal(r.accepted.customerCreated.initialBalance, "1000");
  r = await c.call("deposit", { customer: "js-ann", amount: "500" });
  assert.equal(r.accepted.fundsDeposited.balance, "1500");
  r = await c.call("buyProduct", { customer: "js-ann", product: "apple", quantity: 2 });
  assert.equal(r.accepted.productBought.balance, "1200");
  r = await c.call("returnProduct", { customer: "js-ann", product: "apple", quantity: 1 });
  assert.equal(r.accepted.productReturned.refund, "150");
  r = await c.call("restock", { product: "apple", quantity: 1 });
  assert.ok(r.accepted.productRestocked);
  r = await c.call("getCustomer", { customer: "js-ann" });
  assert.equal(r.customer.balance, "1350");
  r = await c.call("buyProduct", { customer: "nobody", product: "apple", quantity: 1 });
  assert.equal(r.rejected.reason, "unknownCustomer");
  const id = newCommandId();
  const first = await c.call("createCustomer", { customer: "js-once" }, id);
  const again = await c.call("createCustomer", { customer: "js-once" }, id);
  assert.equal(again.accepted.seq, first.accepted.seq);
  r = await c.sendFrame("{nope", null);
  assert.match(r.malformed, /^json: /);
  c.close();
});

test("tail catches up from the oldest, then follows live events without gaps", async () => {
  const c = new ShopClient(endpoints.commands);
  const head = Number((await c.call("getStats")).stats.headSeq);
  const seqs = [];
  for await (const e of tail(endpoints.commands, endpoints.eventsJson, { untilHead: true })) {
    seqs.push(Number(e.seq));
  }
  assert.deepEqual(seqs.slice(0, head), Array.from({ length: head }, (_, i) => i + 1));

  await c.call("createCustomer", { customer: "js-live", initialBalance: 0 });
  const live = tail(endpoints.commands, endpoints.eventsJson, { fromSeq: head + 1 });
  const got = [(await live.next()).value]; // subscribed and caught up
  // Published while the tail waits: they reach it through its SUB socket.
  for (let i = 0; i < 30; ++i) {
    assert.ok((await c.call("deposit", { customer: "js-live", amount: 1 })).accepted);
  }
  while (got.length < 31) got.push((await live.next()).value);
  await live.return();
  assert.deepEqual(got.map((e) => Number(e.seq)), Array.from({ length: 31 }, (_, i) => head + 1 + i));
  assert.equal(got[30].fundsDeposited.balance, "30");
  c.close();
});

test("no server is an error, not a hang", async () => {
  const c = new ShopClient("tcp://127.0.0.1:1", { timeoutMs: 100, retries: 1 });
  await assert.rejects(c.call("getStats"), ShopError);
  c.close();
});
