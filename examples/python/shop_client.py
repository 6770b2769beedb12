#!/usr/bin/env python3
"""A small shop client in Python, using only python3-zmq (Debian's package).

shopd reads a command frame that starts with '{' as JSON, and answers it in
JSON (docs/protocol.md, "JSON frames"). With `shopd --events-json ENDPOINT`
it also publishes every event as JSON. So no Cap'n Proto binding is needed.

    client = ShopClient("tcp://127.0.0.1:5555")
    reply = client.call("createCustomer", customer="alice", initialBalance=10000)
    reply["accepted"]["customerCreated"]["initialBalance"]   # "10000"

    for event in tail("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5557", from_seq=0):
        print(event["seq"], event)

64-bit integers arrive as JSON strings ("10000"); amounts are in cents.

As a script:
    shop_client.py call createCustomer '{"customer": "alice", "initialBalance": 10000}'
    shop_client.py tail --from 0 --until-head
"""

import argparse
import json
import os
import sys

import zmq

__version__ = "0.1.0"


class ShopError(Exception):
    """No reply: the server is unavailable or did not answer in time."""


def new_command_id():
    """A fresh idempotency key: 16 random bytes as 32 hex digits."""
    return os.urandom(16).hex()


class ShopClient:
    """Commands over a DEALER socket. A retry resends the same commandId, so
    the server applies a command at most once however often it is sent."""

    def __init__(self, endpoint, context=None, timeout_ms=2000, retries=2):
        self.endpoint = endpoint
        self.context = context or zmq.Context.instance()
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.socket = None
        self._connect()

    def _connect(self):
        if self.socket is not None:
            self.socket.close(linger=0)
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(self.endpoint)

    def close(self):
        self.socket.close(linger=0)

    def send_frame(self, frame, command_id):
        """Sends one raw frame and returns the parsed reply naming
        command_id. Replies to earlier, abandoned attempts are skipped."""
        for _attempt in range(self.retries + 1):
            self.socket.send(frame)
            deadline_ms = self.timeout_ms
            while self.socket.poll(deadline_ms, zmq.POLLIN):
                reply = json.loads(self.socket.recv())
                if reply.get("commandId") == command_id or command_id is None:
                    return reply
            # Nothing in time: a new socket drops replies to the old attempt.
            self._connect()
        raise ShopError(
            "no reply from %s after %d attempts" % (self.endpoint, self.retries + 1))

    def call(self, kind, command_id=None, **fields):
        """Sends one command, e.g. call("deposit", customer="alice",
        amount=500), and returns the reply as a dict with one of the keys
        accepted, rejected, malformed, customer, events, retired or stats."""
        command_id = command_id or new_command_id()
        frame = json.dumps({"commandId": command_id, kind: fields}).encode()
        return self.send_frame(frame, command_id)

    def read_events(self, from_seq, max_count=0):
        """One page of the log: {"events": [...], "headSeq": "...", ...}."""
        reply = self.call("readEvents", fromSeq=from_seq, maxCount=max_count)
        if "events" not in reply:
            raise ShopError("readEvents from %d: %s" % (from_seq, json.dumps(reply)))
        return reply["events"]


def tail(commands, events_json, from_seq=0, until_head=False, context=None,
         idle_ms=200):
    """Every event from from_seq on (0: the oldest retained), in seq order,
    each exactly once: the Clone pattern. It subscribes first and buffers,
    reads pages up to the head, drops what it has delivered, and re-reads
    any gap the live stream shows. With until_head it stops once it has
    delivered the head it saw when it started."""
    context = context or zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(events_json)
    client = ShopClient(commands, context)
    try:
        next_seq = from_seq
        server_id = None
        stop_at = None
        while True:
            # Catch up from the log, page by page.
            page = client.read_events(next_seq)
            if server_id is None:
                server_id = page["serverId"]
            elif page["serverId"] != server_id:
                raise ShopError("the server restarted (server id %s -> %s)"
                                % (server_id, page["serverId"]))
            head = int(page["headSeq"])
            if stop_at is None:
                stop_at = head
            for event in page["events"]:
                seq = int(event["seq"])
                if seq >= next_seq:
                    yield event
                    next_seq = seq + 1
            if next_seq == 0:
                next_seq = head + 1  # an empty log: the first event is head + 1
            if until_head and next_seq > stop_at:
                return
            if page["events"] and next_seq <= head:
                continue  # more pages to read
            # Live: events in order follow; a jump means a gap, read it.
            while sub.poll(idle_ms, zmq.POLLIN):
                _topic, body = sub.recv_multipart()
                event = json.loads(body)
                seq = int(event["seq"])
                if seq < next_seq:
                    continue  # delivered already
                if seq > next_seq:
                    break  # a gap: back to the log
                yield event
                next_seq = seq + 1
    finally:
        client.close()
        sub.close(linger=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    parser.add_argument("--commands", default=os.environ.get("SHOP_COMMANDS",
                                                             "tcp://127.0.0.1:5555"))
    parser.add_argument("--events-json", default=os.environ.get("SHOP_EVENTS_JSON",
                                                                "tcp://127.0.0.1:5557"))
    parser.add_argument("--timeout-ms", type=int, default=2000)
    sub = parser.add_subparsers(dest="what", required=True)
    call = sub.add_parser("call", help="send one command and print the reply")
    call.add_argument("kind", help="createCustomer, deposit, buyProduct, ...")
    call.add_argument("fields", nargs="?", default="{}", help="the command's fields as JSON")
    tail_parser = sub.add_parser("tail", help="print events as JSON lines")
    tail_parser.add_argument("--from", dest="from_seq", type=int, default=0,
                             help="first seq (0: the oldest retained)")
    tail_parser.add_argument("--until-head", action="store_true",
                             help="stop once caught up")
    args = parser.parse_args(argv)
    try:
        if args.what == "call":
            try:
                fields = json.loads(args.fields)
            except ValueError as e:
                parser.error("fields must be a JSON object: %s" % e)
            client = ShopClient(args.commands, timeout_ms=args.timeout_ms, retries=0)
            reply = client.call(args.kind, **fields)
            print(json.dumps(reply))
            return 0 if "rejected" not in reply and "malformed" not in reply else 1
        for event in tail(args.commands, args.events_json, args.from_seq, args.until_head):
            print(json.dumps(event), flush=True)
        return 0
    except ShopError as e:
        print("shop_client: %s" % e, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
