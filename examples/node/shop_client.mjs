// A small shop client for Node.js, using the `zeromq` npm package.
//
// shopd reads a command frame that starts with '{' as JSON and answers in
// JSON (docs/protocol.md, "JSON frames"); with `shopd --events-json
// ENDPOINT` it also publishes every event as JSON. No Cap'n Proto binding
// is needed.
//
//   const client = new ShopClient("tcp://127.0.0.1:5555");
//   const reply = await client.call("createCustomer", {customer: "alice", initialBalance: 10000});
//   reply.accepted.customerCreated.initialBalance   // "10000"
//
//   for await (const event of tail("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5557")) { ... }
//
// 64-bit integers arrive as JSON strings ("10000"); amounts are in cents.
//
// As a script:
//   node shop_client.mjs call createCustomer '{"customer": "alice", "initialBalance": 10000}'
//   node shop_client.mjs tail --from 0 --until-head
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

import * as zmq from "zeromq";

export const VERSION = "0.1.0";

// No reply: the server is unavailable or did not answer in time.
export class ShopError extends Error {}

// A fresh idempotency key: 16 random bytes as 32 hex digits.
export function newCommandId() {
  return randomBytes(16).toString("hex");
}

// Commands over a DEALER socket, one at a time. A retry resends the same
// commandId, so the server applies a command at most once.
export class ShopClient {
  constructor(endpoint, { timeoutMs = 2000, retries = 2 } = {}) {
    this.endpoint = endpoint;
    this.timeoutMs = timeoutMs;
    this.retries = retries;
    this.connect();
  }

  connect() {
    if (this.socket) this.socket.close();
    this.socket = new zmq.Dealer({ linger: 0, receiveTimeout: this.timeoutMs });
    this.socket.connect(this.endpoint);
  }

  close() {
    this.socket.close();
  }

  // Sends one raw frame; resolves to the parsed reply that names commandId
  // (any reply when commandId is null).
  async sendFrame(frame, commandId) {
    for (let attempt = 0; attempt <= this.retries; ++attempt) {
      await this.socket.send(frame);
      try {
        for (;;) {
          const [body] = await this.socket.receive();
          const reply = JSON.parse(body.toString());
          if (commandId === null || reply.commandId === commandId) return reply;
        }
      } catch (e) {
        if (e.code !== "EAGAIN") throw e;
        this.connect(); // a new socket drops replies to the old attempt
      }
    }
    throw new ShopError(`no reply from ${this.endpoint} after ${this.retries + 1} attempts`);
  }

  // call("deposit", {customer: "alice", amount: 500}): the reply, with one
  // of accepted, rejected, malformed, customer, events, retired or stats.
  async call(kind, fields = {}, commandId = newCommandId()) {
    return this.sendFrame(JSON.stringify({ commandId, [kind]: fields }), commandId);
  }

  async readEvents(fromSeq, maxCount = 0) {
    const reply = await this.call("readEvents", { fromSeq, maxCount });
    if (!reply.events) throw new ShopError(`readEvents from ${fromSeq}: ${JSON.stringify(reply)}`);
    return reply.events;
  }
}

// Every event from fromSeq on (0: the oldest retained), in seq order, each
// exactly once: the Clone pattern. It subscribes first, reads pages up to
// the head, drops what it has delivered, and re-reads any gap the live
// stream shows. With untilHead it stops at the head it saw first.
export async function* tail(commands, eventsJson, { fromSeq = 0, untilHead = false, idleMs = 200 } = {}) {
  const sub = new zmq.Subscriber({ linger: 0, receiveTimeout: idleMs });
  sub.subscribe();
  sub.connect(eventsJson);
  const client = new ShopClient(commands);
  try {
    let next = fromSeq;
    let serverId = null;
    let stopAt = null;
    for (;;) {
      const page = await client.readEvents(next);
      if (serverId === null) serverId = page.serverId;
      else if (page.serverId !== serverId) {
        throw new ShopError(`the server restarted (server id ${serverId} -> ${page.serverId})`);
      }
      const head = Number(page.headSeq);
      if (stopAt === null) stopAt = head;
      for (const event of page.events) {
        const seq = Number(event.seq);
        if (seq >= next) {
          yield event;
          next = seq + 1;
        }
      }
      if (next === 0) next = head + 1; // an empty log: the first event is head + 1
      if (untilHead && next > stopAt) return;
      if (page.events.length > 0 && next <= head) continue; // more pages
      // Live: events in order follow; a jump is a gap, read from the log.
      for (;;) {
        let frames;
        try {
          frames = await sub.receive();
        } catch (e) {
          if (e.code === "EAGAIN") break; // idle: ask the log for the head again
          throw e;
        }
        const event = JSON.parse(frames[1].toString());
        const seq = Number(event.seq);
        if (seq < next) continue;
        if (seq > next) break;
        yield event;
        next = seq + 1;
      }
    }
  } finally {
    client.close();
    sub.close();
  }
}

async function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      commands: { type: "string", default: process.env.SHOP_COMMANDS ?? "tcp://127.0.0.1:5555" },
      "events-json": { type: "string", default: process.env.SHOP_EVENTS_JSON ?? "tcp://127.0.0.1:5557" },
      from: { type: "string", default: "0" },
      "until-head": { type: "boolean", default: false },
      "timeout-ms": { type: "string", default: "2000" },
      version: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.version) {
    console.log(`shop_client.mjs ${VERSION}`);
    return 0;
  }
  const [what, kind, fields = "{}"] = positionals;
  if (values.help || !["call", "tail"].includes(what) || (what === "call" && !kind)) {
    console.log(`usage: shop_client.mjs [--commands EP] [--events-json EP] call KIND [FIELDS_JSON]
       shop_client.mjs [--commands EP] [--events-json EP] tail [--from SEQ] [--until-head]`);
    return values.help ? 0 : 2;
  }
  try {
    if (what === "call") {
      const client = new ShopClient(values.commands, { timeoutMs: Number(values["timeout-ms"]), retries: 0 });
      const reply = await client.call(kind, JSON.parse(fields));
      client.close();
      console.log(JSON.stringify(reply));
      return reply.rejected || reply.malformed ? 1 : 0;
    }
    for await (const event of tail(values.commands, values["events-json"], {
      fromSeq: Number(values.from),
      untilHead: values["until-head"],
    })) {
      console.log(JSON.stringify(event));
    }
    return 0;
  } catch (e) {
    if (!(e instanceof ShopError)) throw e;
    console.error(`shop_client.mjs: ${e.message}`);
    return 3;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
