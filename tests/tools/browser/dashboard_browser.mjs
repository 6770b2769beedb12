// The dashboard page in a real browser (Debian's chromium, headless), against
// a live shopd driven by shopctl: the tables show the right customers and
// balances, the chart's data moves, a customer named like markup renders as
// text, and the status flips to down when shopd stops and back to up, with
// the new server's state, when it restarts. A shop-relay delivers to a
// receiver here (one destination takes everything, one refuses, so it
// parks), and the Delivery table shows both, then the relay down.
//
//   node dashboard_browser.mjs --shopd PATH --shopctl PATH --dashboard PATH --relay PATH --out DIR
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
for (const need of ["shopd", "shopctl", "dashboard", "relay", "out"]) {
  if (!args[need]) throw new Error(`--${need} is required`);
}
const run = promisify(execFile);
const WAIT = 20_000;
const children = [];

function step(text) {
  console.log(`dashboard_browser: ${text}`);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

// Starts a tool and resolves with the first stderr line containing `marker`.
function start(program, argv, marker) {
  const child = spawn(program, argv, { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  let seen = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${program}: no '${marker}' in ${WAIT} ms:\n${seen}`)), WAIT);
    child.stderr.on("data", (chunk) => {
      seen += chunk;
      const line = seen.split("\n").find((l) => l.includes(marker));
      if (line) {
        clearTimeout(timer);
        resolve({ child, line });
      }
    });
    child.on("exit", (code) => reject(new Error(`${program} exited ${code}:\n${seen}`)));
  });
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.removeAllListeners("exit");
    child.on("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}

let commands, events;
async function shopctl(...argv) {
  await run(args.shopctl, ["--endpoint", commands, "--events", events, ...argv]);
}

function startShopd() {
  return start(args.shopd, ["--commands", commands, "--events", events], "serving commands on");
}

// Rows of the customers table as {id: balance text}.
async function customerRows(page) {
  return page.$$eval("#customers-table tbody tr", (rows) =>
    Object.fromEntries(
      rows.map((r) => [
        r.querySelector('td[data-col="id"]')?.textContent,
        r.querySelector('td[data-col="balance"]')?.textContent,
      ]),
    ),
  );
}

// Waits, inside the page (Playwright re-checks on every animation frame),
// until `expected` is a subset of the customers table ({id: balance}) and
// none of `absent` is in it.
async function waitForRows(page, what, expected, absent = []) {
  try {
    await page.waitForFunction(
      ([expected, absent]) => {
        const rows = {};
        for (const r of document.querySelectorAll("#customers-table tbody tr")) {
          rows[r.querySelector('td[data-col="id"]')?.textContent] =
            r.querySelector('td[data-col="balance"]')?.textContent;
        }
        return (
          Object.entries(expected).every(([id, balance]) => rows[id] === balance) &&
          absent.every((id) => !(id in rows))
        );
      },
      [expected, absent],
      { timeout: WAIT },
    );
  } catch (e) {
    throw new Error(`timed out waiting for ${what}; the table shows ${JSON.stringify(await customerRows(page))}`);
  }
}

// A downstream system on loopback: /orders takes every delivery, /refuse
// answers 400 (which the relay parks at once). Resolves with its port.
function startReceiver(delivered) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/orders") delivered.add(req.headers["idempotency-key"]);
      res.writeHead(req.url === "/orders" ? 200 : 400).end();
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// In the page: the Delivery table's row for `dest` as {data-col: text}
// (null when there is none), or, given `expected`, whether it shows that.
function deliveryCells([dest, expected]) {
  const row = document.querySelector(`#delivery-table tr[data-destination="${dest}"]`);
  const cells = row && Object.fromEntries([...row.querySelectorAll("td[data-col]")].map((c) => [c.dataset.col, c.textContent]));
  if (!expected) return cells;
  return !!cells && Object.entries(expected).every(([k, v]) => cells[k] === v);
}

async function waitForDelivery(page, destination, expected) {
  try {
    await page.waitForFunction(deliveryCells, [destination, expected], { timeout: WAIT });
  } catch (e) {
    const shown = await page.evaluate(deliveryCells, [destination, null]);
    throw new Error(`timed out waiting for ${destination} to show ${JSON.stringify(expected)}; it shows ${JSON.stringify(shown)}`);
  }
}

async function main() {
  commands = `tcp://127.0.0.1:${await freePort()}`;
  events = `tcp://127.0.0.1:${await freePort()}`;
  mkdirSync(args.out, { recursive: true });
  let shopd = (await startShopd()).child;

  const delivered = new Set();
  const receiver = await startReceiver(delivered);
  const receiverUrl = `http://127.0.0.1:${receiver.address().port}`;
  const relayDir = mkdtempSync(path.join(os.tmpdir(), "shop-relay-"));
  const control = `tcp://127.0.0.1:${await freePort()}`;
  writeFileSync(path.join(relayDir, "relay.json"), JSON.stringify({
    commands, events, control, stateDir: path.join(relayDir, "state"),
    destinations: [
      { name: "pos", url: `${receiverUrl}/orders`, events: ["customerCreated"] },
      { name: "audit", url: `${receiverUrl}/refuse`, events: ["fundsDeposited"] },
    ],
  }));
  const relay = (await start(args.relay, ["--config", path.join(relayDir, "relay.json")], "control on")).child;

  const dashboard = await start(
    args.dashboard,
    ["--commands", commands, "--events", events, "--http", "127.0.0.1:0", "--relay", control],
    "serving http://",
  );
  const url = dashboard.line.match(/serving (http:\/\/[^ ]+)/)[1];
  step(`dashboard at ${url}`);

  const img = "<img src=x onerror=alert(1)>";
  await shopctl("create", "alice", "100");
  await shopctl("create", "bob", "50");
  await shopctl("create", img, "7");
  await shopctl("deposit", "alice", "5");
  await shopctl("buy", "alice", "apple", "2");  // 1.50 each in the starter catalog

  const profile = mkdtempSync(path.join(os.tmpdir(), "shop-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu"],
    viewport: { width: 1280, height: 900 },
  });
  const problems = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("dialog", (d) => {
      problems.push(`a dialog opened: ${d.message()}`);
      d.dismiss();
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error: ${m.text()}`);
    });
    await page.goto(url);

    step("status up, and the customers with their balances");
    await page.waitForSelector('#status[data-state="up"]', { timeout: WAIT });
    await waitForRows(page, "alice, bob and the markup-named customer", {
      alice: "102.00",
      bob: "50.00",
      [img]: "7.00",
    });
    const imgs = await page.$$eval("img", (all) => all.length);
    if (imgs !== 0) problems.push(`${imgs} <img> elements on the page: an id became markup`);

    step("the chart's data moves as events come");
    const before = await page.$eval("#throughput-chart", (c) => c.dataset.points);
    for (let i = 0; i < 5; i++) await shopctl("deposit", "bob", "1");
    await page.waitForFunction(
      (before) => document.querySelector("#throughput-chart").dataset.points !== before,
      before,
      { timeout: WAIT },
    );
    await waitForRows(page, "bob at 55.00", { bob: "55.00" });

    step("the Delivery table: three customers delivered, the refused deposits parked");
    await waitForDelivery(page, "pos", { delivered: "3", parked: "0", lag: "0", inFlight: "0", lastError: "—" });
    await waitForDelivery(page, "audit", { delivered: "0", parked: "6", lastError: "http status 400" });
    if (delivered.size !== 3) problems.push(`the receiver took ${delivered.size} deliveries, not 3`);
    await page.screenshot({ path: path.join(args.out, "dashboard.png") });

    step("the relay stops: its row says down");
    await stop(relay);
    await page.waitForSelector(`#delivery-table tr[data-state="down"][data-relay="${control}"]`, { timeout: WAIT });
    const why = await page.$eval('#delivery-table tr[data-state="down"] td[data-col="error"]', (c) => c.textContent);
    if (!why.startsWith("DOWN: no answer within")) problems.push(`the down relay's row says '${why}'`);

    step("shopd stops: the status says down");
    await stop(shopd);
    await page.waitForSelector('#status[data-state="down"]', { timeout: WAIT });
    await page.screenshot({ path: path.join(args.out, "dashboard-down.png") });

    step("shopd restarts: up again, with the new server's state");
    shopd = (await startShopd()).child;
    await shopctl("create", "carol", "9");
    await page.waitForSelector('#status[data-state="up"]', { timeout: WAIT });
    await waitForRows(page, "carol, and no one from the old server", { carol: "9.00" }, ["alice", "bob"]);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    receiver.close();
    rmSync(relayDir, { recursive: true, force: true });
  }
  if (problems.length) throw new Error(problems.join("\n"));
  step("ok");
}

main()
  .then(async () => {
    for (const c of children) await stop(c);
    process.exit(0);
  })
  .catch(async (e) => {
    console.error(`dashboard_browser: FAILED: ${e.stack || e}`);
    for (const c of children) await stop(c);
    process.exit(1);
  });
