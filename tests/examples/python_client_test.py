#!/usr/bin/env python3
"""examples/python/shop_client.py against a live shopd over real TCP.

    python_client_test.py SHOPD EXAMPLE_DIR

shopd binds ephemeral ports (tcp://127.0.0.1:*) and the test reads the
endpoints it logs; every wait is on a reply, an event or a log line.
"""

import json
import os
import queue
import re
import subprocess
import sys
import threading
import unittest

SHOPD = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SHOPD", "shopd")
EXAMPLE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(__file__), "..", "..", "examples", "python")
sys.path.insert(0, EXAMPLE)

import shop_client  # noqa: E402
from shop_client import ShopClient, ShopError, tail  # noqa: E402


class Shopd:
    """shopd on ephemeral ports, with its log read on a thread."""

    def __init__(self, *extra):
        self.process = subprocess.Popen(
            [SHOPD, "--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
             "--events-json", "tcp://127.0.0.1:*", "--no-catalog", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        serving = self.wait_for(r"serving commands on (\S+), events on (\S+) ")
        self.commands, self.events = serving.group(1), serving.group(2)
        self.events_json = self.wait_for(r"publishing events as JSON on (\S+)").group(1)

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern):
        while True:
            line = self.lines.get(timeout=30)
            if line is None:
                raise AssertionError("shopd exited before logging /%s/" % pattern)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self):
        self.process.terminate()
        return self.process.wait(timeout=30)


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.shopd = Shopd()
        cls.client = ShopClient(cls.shopd.commands)
        reply = cls.client.call("addProduct", product="apple", price=150, stock=100)
        assert "accepted" in reply, reply

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        code = cls.shopd.stop()
        assert code == 0, "shopd exited %d" % code

    def head(self):
        return int(self.client.call("getStats")["stats"]["headSeq"])

    def test_every_command_kind(self):
        c = self.client
        r = c.call("createCustomer", customer="py-alice", initialBalance=1000)
        self.assertEqual(r["accepted"]["customerCreated"]["initialBalance"], "1000")
        r = c.call("deposit", customer="py-alice", amount="500")
        self.assertEqual(r["accepted"]["fundsDeposited"]["balance"], "1500")
        r = c.call("buyProduct", customer="py-alice", product="apple", quantity=2)
        self.assertEqual(r["accepted"]["productBought"]["balance"], "1200")
        r = c.call("returnProduct", customer="py-alice", product="apple", quantity=1)
        self.assertEqual(r["accepted"]["productReturned"]["refund"], "150")
        r = c.call("restock", product="apple", quantity=5)
        self.assertIn("productRestocked", r["accepted"])
        r = c.call("getCustomer", customer="py-alice")
        self.assertEqual(r["customer"]["balance"], "1350")
        self.assertEqual(r["customer"]["holdings"],
                         [{"product": "apple", "quantity": "1", "paid": "150"}])
        page = c.read_events(1, 2)
        self.assertEqual([e["seq"] for e in page["events"]], ["1", "2"])
        self.assertIn("version", c.call("getStats")["stats"])

    def test_rejections_carry_a_reason(self):
        r = self.client.call("buyProduct", customer="nobody", product="apple", quantity=1)
        self.assertEqual(r["rejected"]["reason"], "unknownCustomer")
        r = self.client.call("deposit", customer="bad/id", amount=1)
        self.assertEqual(r["rejected"]["reason"], "invalidId")

    def test_a_retry_with_the_same_command_id_is_applied_once(self):
        command_id = shop_client.new_command_id()
        first = self.client.call("createCustomer", command_id=command_id,
                                 customer="py-once", initialBalance=5)
        again = self.client.call("createCustomer", command_id=command_id,
                                 customer="py-once", initialBalance=5)
        self.assertEqual(first["accepted"]["seq"], again["accepted"]["seq"])

    def test_malformed_json_is_answered_with_why(self):
        reply = self.client.send_frame(b'{"commandId": "00", "getStats": {}}', None)
        self.assertIn("commandId must be 32 hex digits", reply["malformed"])
        reply = self.client.send_frame(b"{nope", None)
        self.assertTrue(reply["malformed"].startswith("json: "), reply)

    def test_tail_catches_up_from_the_oldest_then_stops_at_the_head(self):
        head = self.head()
        seqs = [int(e["seq"]) for e in tail(self.shopd.commands, self.shopd.events_json,
                                            from_seq=0, until_head=True)]
        self.assertEqual(seqs[:head], list(range(1, head + 1)))

    def test_tail_follows_live_events_without_gaps(self):
        start = self.head() + 1
        self.client.call("createCustomer", customer="py-live", initialBalance=0)
        events = tail(self.shopd.commands, self.shopd.events_json, from_seq=start)
        first = next(events)  # subscribed and caught up
        # Published while the tail waits: they reach it through its SUB socket.
        for _ in range(50):
            reply = self.client.call("deposit", customer="py-live", amount=1)
            self.assertIn("accepted", reply)
        got = [first] + [next(events) for _ in range(50)]
        events.close()
        self.assertEqual([int(e["seq"]) for e in got], list(range(start, start + 51)))
        self.assertEqual(got[-1]["fundsDeposited"]["balance"], "50")

    def test_the_script(self):
        script = os.path.join(EXAMPLE, "shop_client.py")
        run = lambda *args: subprocess.run(  # noqa: E731
            [sys.executable, script, "--commands", self.shopd.commands,
             "--events-json", self.shopd.events_json, *args],
            capture_output=True, text=True, timeout=30)
        self.assertIn(shop_client.__version__, run("--version").stdout)
        ok = run("call", "createCustomer", '{"customer": "py-cli", "initialBalance": 7}')
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(json.loads(ok.stdout)["accepted"]["customerCreated"]["customer"],
                         "py-cli")
        rejected = run("call", "createCustomer", '{"customer": "py-cli"}')
        self.assertEqual(rejected.returncode, 1)
        self.assertEqual(json.loads(rejected.stdout)["rejected"]["reason"], "customerExists")
        head = self.head()
        lines = run("tail", "--from", "0", "--until-head").stdout.splitlines()
        self.assertGreaterEqual(len(lines), head)
        self.assertEqual(int(json.loads(lines[head - 1])["seq"]), head)

    def test_no_server_is_an_error_not_a_hang(self):
        # A port nothing listens on: shopd's own commands port after... a
        # fresh socket's ephemeral port that was closed at once.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        client = ShopClient("tcp://127.0.0.1:%d" % port, timeout_ms=100, retries=1)
        with self.assertRaises(ShopError):
            client.call("getStats")
        client.close()


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
